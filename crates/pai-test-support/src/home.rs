use std::path::{Path, PathBuf};

/// A throwaway PAI home and config dir; removed when dropped.
#[derive(Debug)]
pub struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("create home");
        std::fs::create_dir_all(dir.path().join("config")).expect("create config");
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Environment for a `pai` child process confined to this home.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PAI_HOME".into(), self.home().display().to_string()),
            ("PAI_CONFIG_DIR".into(), self.config().display().to_string()),
        ]
    }
}

impl Default for TempHome {
    fn default() -> Self {
        Self::new()
    }
}
