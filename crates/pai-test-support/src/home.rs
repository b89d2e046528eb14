use std::path::{Path, PathBuf};

/// A throwaway PAI home and config dir; removed when dropped.
#[derive(Debug)]
pub struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    /// A fresh temp dir holding empty `home/` and `config/` dirs.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("create home");
        std::fs::create_dir_all(dir.path().join("config")).expect("create config");
        Self { dir }
    }

    /// The temp dir holding both, for files a test keeps beside them.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The dir to pass as `PAI_HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The dir to pass as `PAI_CONFIG_DIR`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Writes `PAI_CONFIG_DIR/config.toml`.
    #[allow(clippy::expect_used)]
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config().join("config.toml"), toml).expect("write config.toml");
    }

    /// Every regular file under the home and config dirs, for tests that must prove
    /// something (a plaintext key, say) was written nowhere.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => walk(&path, out),
                    Ok(t) if t.is_file() => out.push(path),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root(), &mut out);
        out.sort();
        out
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
