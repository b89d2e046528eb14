//! A sandbox per test: `root/` is the one allowed directory, `outside/` (beside it) holds
//! what no tool may reach, and `root-evil/` shares `root`'s name as a string prefix.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pai_tools::{
    Hop, HopSent, NetGate, PublicOnly, ToolContext, ToolError, ToolOutput, ToolRegistry,
    builtin_tools,
};

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

/// An egress gate for tests: allows the hosts it is given (whatever they resolve to), answers
/// the rest as [`PublicOnly`] does, and records every hop checked and sent.
#[derive(Debug, Default)]
pub struct TestGate {
    allow: Vec<String>,
    /// When set, every hop is refused with this reason.
    refuse_with: Option<String>,
    checked: Mutex<Vec<Hop>>,
    sent: Mutex<Vec<HopSent>>,
}

impl TestGate {
    /// Allows these hosts, as [`Hop::host`] spells them (`127.0.0.1`, `localhost`, `::1`).
    pub fn allowing(hosts: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            allow: hosts.iter().map(|h| h.to_string()).collect(),
            ..Self::default()
        })
    }

    /// Refuses every hop with `reason`.
    pub fn refusing(reason: &str) -> Arc<Self> {
        Arc::new(Self {
            refuse_with: Some(reason.into()),
            ..Self::default()
        })
    }

    pub fn checked(&self) -> Vec<Hop> {
        self.checked.lock().unwrap().clone()
    }

    pub fn sent(&self) -> Vec<HopSent> {
        self.sent.lock().unwrap().clone()
    }

    /// A tool context whose gate is this one.
    pub fn cx(self: &Arc<Self>) -> ToolContext {
        ToolContext {
            net: self.clone(),
            ..ToolContext::default()
        }
    }
}

#[async_trait]
impl NetGate for TestGate {
    async fn check(&self, hop: &Hop) -> Result<(), String> {
        self.checked.lock().unwrap().push(hop.clone());
        if let Some(reason) = &self.refuse_with {
            return Err(reason.clone());
        }
        if self.allow.contains(&hop.host) {
            return Ok(());
        }
        PublicOnly::verdict(hop)
    }

    fn sent(&self, sent: &HopSent) {
        self.sent.lock().unwrap().push(sent.clone());
    }
}

/// A context whose gate lets the tests reach their servers on 127.0.0.1.
pub fn loopback_cx() -> ToolContext {
    TestGate::allowing(&["127.0.0.1"]).cx()
}
