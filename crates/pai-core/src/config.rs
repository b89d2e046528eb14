use std::path::Path;
use std::time::Duration;

use pai_providers::{NetSettings, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// `config.toml`: every key optional, unknown keys refused so a typo is caught.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub network: NetworkSettings,
    pub context: ContextSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    pub connect_timeout_secs: u64,
    /// Longest silence tolerated while a reply or stream is being read.
    pub read_timeout_secs: u64,
    /// Tries after the first on 408/409/429/5xx and refused connections.
    pub max_retries: u32,
    /// Cap on any single wait between tries, whatever the server's `Retry-After` says.
    pub max_retry_wait_secs: u64,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            read_timeout_secs: 120,
            max_retries: 3,
            max_retry_wait_secs: 20,
        }
    }
}

impl NetworkSettings {
    pub fn to_net(&self) -> NetSettings {
        NetSettings {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
            read_timeout: Duration::from_secs(self.read_timeout_secs.max(1)),
            retry: RetryPolicy {
                max_retries: self.max_retries,
                max_wait: Duration::from_secs(self.max_retry_wait_secs),
                ..RetryPolicy::default()
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextSettings {
    /// The system prompt sent first in every request.
    pub system_prompt: String,
    /// In prompt mode, once the turns not yet in the summary pass this many tokens,
    /// the model folds them into the summary (one extra, audited call).
    pub summary_threshold_tokens: u64,
    /// Tokens of the model's window kept free for its answer.
    pub reserve_output_tokens: u64,
    /// Overrides the context window PAI assumes for every model (0 = PAI's table).
    pub context_window: u64,
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            system_prompt: "You are PAI, a concise and helpful personal assistant.".into(),
            summary_threshold_tokens: 2000,
            reserve_output_tokens: 1024,
            context_window: 0,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(CoreError::Config {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| CoreError::Config {
            path: path.to_path_buf(),
            detail: e.message().to_string() + &location(&text, e.span()),
        })
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line}); fix it or remove the file to use the defaults")
        }
        None => "; fix it or remove the file to use the defaults".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_defaults_and_partial_file_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        std::fs::write(&path, "[network]\nmax_retries = 0\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.network.max_retries, 0);
        assert_eq!(cfg.network.read_timeout_secs, 120);
        assert_eq!(cfg.context, ContextSettings::default());
    }

    #[test]
    fn typos_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[network]\nmax_retry = 1\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `max_retry`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(Config::load(&path).is_err());
    }
}
