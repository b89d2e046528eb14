//! A sandbox per test: `root/` is the one allowed directory, `outside/` (beside it) holds
//! what no tool may reach, and `root-evil/` shares `root`'s name as a string prefix.

use std::path::{Path, PathBuf};

use pai_tools::{ToolContext, ToolError, ToolOutput, ToolRegistry, builtin_tools};

pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub evil: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let sandbox = Self {
            root: base.join("root"),
            outside: base.join("outside"),
            evil: base.join("root-evil"),
            _dir: dir,
        };
        for d in [&sandbox.root, &sandbox.outside, &sandbox.evil] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(sandbox.outside.join("secret.txt"), "secret outside\n").unwrap();
        std::fs::write(sandbox.evil.join("secret.txt"), "secret evil\n").unwrap();
        sandbox
    }

    pub fn cx(&self) -> ToolContext {
        ToolContext {
            roots: vec![self.root.clone()],
            ..ToolContext::default()
        }
    }

    /// Writes a file under the root, creating its parents.
    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    /// A symlink at `rel` under the root pointing to `target`.
    pub fn link(&self, rel: &str, target: &Path) {
        std::os::unix::fs::symlink(target, self.root.join(rel)).unwrap();
    }
}

pub fn registry() -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    for tool in builtin_tools() {
        registry.register(tool).unwrap();
    }
    registry
}

/// Calls a built-in tool the way pai-core does: through the registry, with its caps.
pub async fn call(
    name: &str,
    args: serde_json::Value,
    cx: &ToolContext,
) -> Result<ToolOutput, ToolError> {
    registry().call(name, args, cx).await
}

/// The text of a successful call; panics with the error otherwise.
pub async fn text(name: &str, args: serde_json::Value, cx: &ToolContext) -> String {
    match call(name, args.clone(), cx).await {
        Ok(out) => out.content,
        Err(e) => panic!("{name}({args}) failed: {e}"),
    }
}

/// The error of a call that must fail.
pub async fn error(name: &str, args: serde_json::Value, cx: &ToolContext) -> ToolError {
    match call(name, args.clone(), cx).await {
        Ok(out) => panic!("{name}({args}) should have failed, got:\n{}", out.content),
        Err(e) => e,
    }
}
