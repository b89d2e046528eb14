use std::path::{Path, PathBuf};

use pai_types::SessionName;

use crate::error::{CoreError, Result, io};

/// Where PAI keeps its files: data under `PAI_HOME`, configuration under `PAI_CONFIG_DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Data: sessions, models, the audit log, chat history.
    pub home: PathBuf,
    /// Configuration: `config.toml`.
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

    /// Explicit locations, for tests and embedders that do not read the environment.
    pub fn new(home: impl Into<PathBuf>, config_dir: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            config_dir: config_dir.into(),
        }
    }

    /// One directory per session.
    pub fn sessions_dir(&self) -> PathBuf {
        self.home.join("sessions")
    }

    /// Where `name`'s files live (it may not exist yet).
    pub fn session_dir(&self, name: &SessionName) -> PathBuf {
        self.sessions_dir().join(name.as_str())
    }

    /// The local model store: GGUF files and their index.
    pub fn models_dir(&self) -> PathBuf {
        self.home.join("models")
    }

    /// The SQLite audit log.
    pub fn audit_db(&self) -> PathBuf {
        self.home.join("audit.db")
    }

    /// The audit log's MAC key when `PAI_ENCRYPTION_KEY` is not given (0600, created on
    /// first use); in the config dir, apart from the log it seals.
    pub fn audit_key(&self) -> PathBuf {
        self.config_dir.join("audit.key")
    }

    /// The REPL's line-editing history.
    pub fn chat_history(&self) -> PathBuf {
        self.home.join("chat_history.txt")
    }

    /// Where `config.toml` is read from.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// Where `policy.toml` is read from.
    pub fn policy_file(&self) -> PathBuf {
        self.config_dir.join("policy.toml")
    }

    /// The config directory (`config.toml`, `policy.toml`).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The data directory, `PAI_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// Creates `dir` (and any missing parent) with mode 0700, or tightens an existing one that
/// group or others may enter. PAI's files are 0600 already; a loose directory would still
/// show session names and let another user swap files in it. A directory PAI may not
/// chmod (not its own, or a filesystem without modes) is reported and used as it is:
/// refusing would lock the user out of their data for a tracing-level matter.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            #[cfg(unix)]
            tighten(dir, &meta);
            #[cfg(not(unix))]
            let _ = meta;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir).map_err(io("create", dir))
        }
        Err(e) => Err(io("open", dir)(e)),
    }
}

#[cfg(unix)]
fn tighten(dir: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:o}"),
            "other users could open this PAI directory; restricted it to 0700"
        ),
        Err(e) => tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            error = %e,
            "other users can open this PAI directory and PAI cannot restrict it; chmod 700 it"
        ),
    }
}
