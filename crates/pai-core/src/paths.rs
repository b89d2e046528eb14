use std::path::{Path, PathBuf};

use pai_types::SessionName;

use crate::error::{CoreError, Result};

/// Where PAI keeps its files: data under `PAI_HOME`, configuration under `PAI_CONFIG_DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub home: PathBuf,
    pub config_dir: PathBuf,
}

impl Paths {
    /// `PAI_HOME` / `PAI_CONFIG_DIR`, else the platform's data and config dirs + `pai`.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("PAI_HOME")
            .or_else(|| dirs::data_dir().map(|d| d.join("pai")))
            .ok_or(CoreError::NoHome)?;
        let config_dir = var("PAI_CONFIG_DIR")
            .or_else(|| dirs::config_dir().map(|d| d.join("pai")))
            .unwrap_or_else(|| home.join("config"));
        Ok(Self { home, config_dir })
    }

    pub fn new(home: impl Into<PathBuf>, config_dir: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            config_dir: config_dir.into(),
        }
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.home.join("sessions")
    }

    pub fn session_dir(&self, name: &SessionName) -> PathBuf {
        self.sessions_dir().join(name.as_str())
    }

    /// The local model store: GGUF files and their index.
    pub fn models_dir(&self) -> PathBuf {
        self.home.join("models")
    }

    pub fn audit_db(&self) -> PathBuf {
        self.home.join("audit.db")
    }

    pub fn chat_history(&self) -> PathBuf {
        self.home.join("chat_history.txt")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    pub fn home(&self) -> &Path {
        &self.home
    }
}
