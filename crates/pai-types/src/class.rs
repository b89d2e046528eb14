//! How sensitive a piece of data is, and where it came from. Every part of a model's
//! context carries both, so the policy decides on facts instead of guessing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How sensitive data is, ordered: a part derived from others carries the highest class
/// among them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DataClass {
    /// Anyone may see it (a public web page, a model's general answer).
    Public,
    /// The user's own work, fine to share with the endpoints they chose. What typed
    /// input is unless a detector or rule says more.
    #[default]
    Internal,
    /// About a person: e-mail addresses, phone numbers, identifiers. Redacted for remote
    /// endpoints by default.
    Personal,
    /// Credentials and keys. Never reaches a remote endpoint by default.
    Secret,
}

impl DataClass {
    /// Every class, lowest first.
    pub const ALL: [DataClass; 4] = [
        DataClass::Public,
        DataClass::Internal,
        DataClass::Personal,
        DataClass::Secret,
    ];

    /// The lowercase name used in rules and records.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Internal => "internal",
            DataClass::Personal => "personal",
            DataClass::Secret => "secret",
        }
    }

    /// The internal default: what a part is when nothing says otherwise. Skipped when
    /// serialising so old history lines and new ones read the same.
    pub fn is_default(&self) -> bool {
        *self == DataClass::default()
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A class name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a data class; use public, internal, personal or secret")]
pub struct UnknownClass(pub String);

impl FromStr for DataClass {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_string()))
    }
}

/// Where a part of a model's context came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
pub enum Origin {
    /// The system prompt PAI or the user configured.
    System,
    /// What the user typed in this turn.
    #[default]
    User,
    /// The session's running summary, folded from earlier turns.
    Summary,
    /// An earlier message of the session, replayed from its history.
    History,
    /// A model's answer in this turn.
    Answer,
    /// What a tool call returned.
    ToolResult {
        /// The tool that produced it.
        tool: String,
    },
    /// A chunk of a stored resource.
    Resource {
        /// The resource's id.
        id: String,
    },
    /// A file's content, read by a tool or attached by the user.
    File {
        /// The path as given.
        path: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::System => f.write_str("system prompt"),
            Origin::User => f.write_str("your input"),
            Origin::Summary => f.write_str("session summary"),
            Origin::History => f.write_str("history"),
            Origin::Answer => f.write_str("model answer"),
            Origin::ToolResult { tool } => write!(f, "{tool} result"),
            Origin::Resource { id } => write!(f, "resource {id}"),
            Origin::File { path } => write!(f, "file {path}"),
        }
    }
}

/// The origin and class of one part of a context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    /// Where the part came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// How sensitive it is.
    #[serde(default, skip_serializing_if = "DataClass::is_default")]
    pub class: DataClass,
}

impl Provenance {
    /// A part from `origin`, of class `class`.
    pub fn new(origin: Origin, class: DataClass) -> Self {
        Self { origin, class }
    }

    /// The class of a part derived from `parts`: the highest among them, or the default
    /// when there are none.
    pub fn derived<'a>(parts: impl IntoIterator<Item = &'a Provenance>) -> DataClass {
        parts.into_iter().map(|p| p.class).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_ordered_and_a_derived_part_takes_the_highest() {
        assert!(DataClass::Public < DataClass::Internal);
        assert!(DataClass::Internal < DataClass::Personal);
        assert!(DataClass::Personal < DataClass::Secret);
        let parts = [
            Provenance::new(Origin::User, DataClass::Internal),
            Provenance::new(
                Origin::File {
                    path: ".env".into(),
                },
                DataClass::Secret,
            ),
            Provenance::new(Origin::History, DataClass::Personal),
        ];
        assert_eq!(Provenance::derived(&parts), DataClass::Secret);
        assert_eq!(Provenance::derived(&[]), DataClass::Internal);
    }

    #[test]
    fn class_names_round_trip_and_unknown_ones_are_errors() {
        for c in DataClass::ALL {
            assert_eq!(c.as_str().parse::<DataClass>().unwrap(), c);
        }
        let err = "topsecret".parse::<DataClass>().unwrap_err();
        assert!(
            err.to_string()
                .contains("public, internal, personal or secret")
        );
    }

    #[test]
    fn provenance_serialises_flat_and_skips_the_default_class() {
        let p = Provenance::new(
            Origin::ToolResult {
                tool: "read_file".into(),
            },
            DataClass::Internal,
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"origin":"tool_result","tool":"read_file"}"#);
        let secret = Provenance::new(Origin::User, DataClass::Secret);
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(json, r#"{"origin":"user","class":"secret"}"#);
        assert_eq!(serde_json::from_str::<Provenance>(&json).unwrap(), secret);
    }
}
