//! What an action can do to the world.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a tool can do to the world. A tool declares every effect it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Reads local data (files, databases) under the allowed roots.
    Read,
    /// Changes local data.
    Write,
    /// Sends or fetches data over the network.
    Network,
    /// Runs programs.
    Exec,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Network => "network",
            Effect::Exec => "exec",
        })
    }
}
