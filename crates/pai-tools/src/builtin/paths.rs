//! Path confinement for the file tools, in two steps.
//!
//! 1. The check: a path is resolved to a canonical one (no `..`, no symlinks), which must
//!    lie inside one of the context's roots and must not be protected (PAI's own state,
//!    VCS internals).
//! 2. The open: the checked path is opened beneath a handle on its root, one component at
//!    a time, refusing a symlink at every step. A directory swapped for a symlink after
//!    the check therefore fails the open instead of leading out of the root (or into a
//!    protected directory inside it).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions};

use crate::tool::{ToolContext, ToolError};

/// Names of version-control internals: a hook or config written there runs code the next
/// time the user runs git, and they hold history the user did not mean to hand over.
const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".jj"];

/// What a call may reach: the canonical roots and protected paths of a context.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    roots: Vec<PathBuf>,
    protected: Vec<PathBuf>,
}

/// A path that passed the check.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// Canonical and inside a root.
    pub path: PathBuf,
    /// How to show it to the model: relative to the first root when under it, so the
    /// model can pass it back as is.
    pub shown: String,
    /// The root it is under, and the path below it (plain names only).
    root: PathBuf,
    rel: PathBuf,
}

/// Resolves a path that must already exist (read_file, list_dir, search_files, sqlite_query).
pub(super) fn resolve_existing(cx: &ToolContext, requested: &str) -> Result<Resolved, ToolError> {
    Guard::new(cx)?.resolve_existing(requested)
}

/// Resolves a path that may not exist yet (write_file): the deepest existing ancestor is
/// canonicalised and the missing rest, which may not contain `..`, is appended to it.
pub(super) fn resolve_for_write(cx: &ToolContext, requested: &str) -> Result<Resolved, ToolError> {
    Guard::new(cx)?.resolve_for_write(requested)
}

impl Guard {
    pub(super) fn new(cx: &ToolContext) -> Result<Self, ToolError> {
        let roots: Vec<PathBuf> = cx
            .roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        if roots.is_empty() {
            return Err(ToolError::Failed(
                "no directory is open to file tools in this run (PAI never opens the home \
                 directory or / on its own); the user can rerun with --root DIR to allow one"
                    .into(),
            ));
        }
        // A protected path that does not exist yet (an audit log not written so far) is
        // still protected, at the place it would be created.
        let protected = cx
            .protected
            .iter()
            .filter_map(|p| canonical_would_be(p))
            .collect();
        Ok(Self { roots, protected })
    }

    /// The canonical roots, the first being where relative paths start.
    pub(super) fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub(super) fn resolve_existing(&self, requested: &str) -> Result<Resolved, ToolError> {
        let joined = self.join(requested)?;
        match std::fs::canonicalize(&joined) {
            Ok(path) => self.confine(requested, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Say "outside" (or "protected") rather than "not found" for a path out of
                // reach, so a model cannot probe what exists there.
                let would_be = self.resolve_missing(requested, &joined)?;
                Err(ToolError::NotFound(would_be.shown))
            }
            Err(e) => Err(ToolError::Failed(format!("cannot open '{requested}': {e}"))),
        }
    }

    pub(super) fn resolve_for_write(&self, requested: &str) -> Result<Resolved, ToolError> {
        let joined = self.join(requested)?;
        self.resolve_missing(requested, &joined)
    }

    /// Why `path` (canonical) is out of reach whatever the roots, if it is.
    pub(super) fn protection(&self, path: &Path) -> Option<&'static str> {
        if path.components().any(|c| is_vcs_name(c.as_os_str())) {
            return Some("it is version-control internals (.git, .hg, .svn or .jj)");
        }
        if self.protected.iter().any(|p| covers(p, path)) {
            return Some("it holds PAI's own sessions, settings or audit log");
        }
        None
    }

    fn resolve_missing(&self, requested: &str, joined: &Path) -> Result<Resolved, ToolError> {
        let (prefix, rest) = split_existing(joined).map_err(|(prefix, e)| {
            ToolError::Failed(format!(
                "cannot use '{requested}': {} ({e})",
                prefix.display()
            ))
        })?;
        let mut path = std::fs::canonicalize(&prefix).map_err(|e| {
            ToolError::Failed(format!(
                "cannot use '{requested}': '{}' cannot be resolved ({e}); \
                 it may be a symbolic link whose target does not exist",
                prefix.display()
            ))
        })?;
        for component in rest.components() {
            match component {
                Component::Normal(name) => path.push(name),
                Component::CurDir => {}
                _ => {
                    return Err(ToolError::InvalidArguments(format!(
                        "'{requested}' uses '..' below a directory that does not exist; \
                         give the path without '..'"
                    )));
                }
            }
        }
        self.confine(requested, path)
    }

    fn join(&self, requested: &str) -> Result<PathBuf, ToolError> {
        if requested.is_empty() {
            return Err(ToolError::InvalidArguments(
                "the path is empty; give a path such as '.' or 'src/main.rs'".into(),
            ));
        }
        if requested.contains('\0') {
            return Err(ToolError::InvalidArguments(
                "the path contains a NUL byte".into(),
            ));
        }
        // Relative paths start at the first root; an absolute path replaces it.
        Ok(self.roots[0].join(requested))
    }

    fn confine(&self, requested: &str, path: PathBuf) -> Result<Resolved, ToolError> {
        // `Path::starts_with` compares whole components: `/root-evil` is not under `/root`.
        let Some(root) = self.roots.iter().find(|root| path.starts_with(root)) else {
            return Err(ToolError::OutsideRoots {
                path: requested.to_string(),
                roots: self
                    .roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some(why) = self.protection(&path) {
            return Err(protected(requested, why));
        }
        let rel = path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let shown = show(&self.roots[0], &path);
        Ok(Resolved {
            root: root.clone(),
            rel,
            path,
            shown,
        })
    }
}

/// The refusal for a protected path, worded for the model.
pub(super) fn protected(requested: &str, why: &str) -> ToolError {
    ToolError::Failed(format!(
        "'{requested}' is protected: {why}, so no tool may read or change it"
    ))
}

/// `.git` and the like, compared without case (case-insensitive filesystems).
pub(super) fn is_vcs_name(name: &OsStr) -> bool {
    VCS_DIRS
        .iter()
        .any(|vcs| name.as_encoded_bytes().eq_ignore_ascii_case(vcs.as_bytes()))
}

/// `protected` covers `path`: it is the path, an ancestor of it, or (a SQLite database)
/// the path's journal or WAL beside it.
fn covers(protected: &Path, path: &Path) -> bool {
    if path.starts_with(protected) {
        return true;
    }
    let (Some(parent), Some(name)) = (protected.parent(), protected.file_name()) else {
        return false;
    };
    ["-wal", "-shm", "-journal"].iter().any(|suffix| {
        let mut sibling = name.to_os_string();
        sibling.push(suffix);
        path.starts_with(parent.join(sibling))
    })
}

/// The longest existing prefix of `path` (a dangling symlink counts as existing, so it is
/// refused later rather than written through) and the missing rest.
fn split_existing(path: &Path) -> Result<(PathBuf, PathBuf), (PathBuf, io::Error)> {
    let components: Vec<Component<'_>> = path.components().collect();
    let mut existing = components.len();
    loop {
        let prefix: PathBuf = components[..existing].iter().collect();
        match std::fs::symlink_metadata(&prefix) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound && existing > 1 => existing -= 1,
            Err(e) => return Err((prefix, e)),
        }
    }
    let prefix = components[..existing].iter().collect();
    let rest = components[existing..].iter().collect();
    Ok((prefix, rest))
}

/// `path` made canonical as far as it exists, the rest appended.
fn canonical_would_be(path: &Path) -> Option<PathBuf> {
    let (prefix, rest) = split_existing(path).ok()?;
    let mut out = std::fs::canonicalize(prefix).ok()?;
    for c in rest.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => out = out.parent()?.to_path_buf(),
        }
    }
    Some(out)
}

impl Resolved {
    /// The last component's name; `None` for a root itself.
    pub(super) fn file_name(&self) -> Option<&OsStr> {
        self.rel.file_name()
    }

    /// Opens the checked file for reading, beneath the root.
    pub(super) fn open_file(&self) -> io::Result<std::fs::File> {
        open_file_beneath(&self.root, &self.rel)
    }

    /// Opens the checked directory, beneath the root.
    pub(super) fn open_dir(&self) -> io::Result<Dir> {
        open_dirs(&self.root, &self.rel, false)
    }

    /// Opens the checked path's parent directory, creating what is missing of it, beneath
    /// the root; the caller works on [`Resolved::file_name`] relative to it.
    pub(super) fn create_parent(&self) -> io::Result<Dir> {
        let parent = self.rel.parent().unwrap_or(Path::new(""));
        open_dirs(&self.root, parent, true)
    }
}

/// Opens `rel` (plain names only) below `root` for reading, refusing a symlink at every
/// step, so what is opened is what was checked.
pub(super) fn open_file_beneath(root: &Path, rel: &Path) -> io::Result<std::fs::File> {
    let Some(name) = rel.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    };
    let parent = open_dirs(root, rel.parent().unwrap_or(Path::new("")), false)?;
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    Ok(parent.open_with(name, &options)?.into_std())
}

/// Opens each directory of `rel` in turn from a handle on `root`, never through a symlink;
/// with `create`, missing ones are made.
fn open_dirs(root: &Path, rel: &Path, create: bool) -> io::Result<Dir> {
    // The one ambient open: the root itself, which the user chose.
    let mut dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path is not a plain path below its root",
            ));
        };
        dir = match dir.open_dir_nofollow(name) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                match dir.create_dir(name) {
                    Ok(()) => {}
                    // Made by someone else meanwhile: open it as it is, still no symlink.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                dir.open_dir_nofollow(name)?
            }
            other => other?,
        };
    }
    Ok(dir)
}

/// A name for a write's temp file beside `name`, unique within this process.
pub(super) fn temp_name(name: &OsStr) -> OsString {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.{n}.pai-tmp", std::process::id()));
    temp
}

/// `path` relative to `base` when under it (`.` for `base` itself), else absolute.
pub(super) fn show(base: &Path, path: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{covers, is_vcs_name, show};

    #[test]
    fn shown_paths_are_relative_to_the_first_root() {
        assert_eq!(show(Path::new("/r"), Path::new("/r")), ".");
        assert_eq!(show(Path::new("/r"), Path::new("/r/a/b")), "a/b");
        assert_eq!(show(Path::new("/r"), Path::new("/r2/a")), "/r2/a");
    }

    #[test]
    fn protection_covers_descendants_and_a_databases_side_files() {
        let db = Path::new("/h/audit.db");
        assert!(covers(db, Path::new("/h/audit.db")));
        assert!(covers(db, Path::new("/h/audit.db-wal")));
        assert!(covers(db, Path::new("/h/audit.db-journal")));
        assert!(!covers(db, Path::new("/h/audit.dbx")));
        assert!(covers(Path::new("/h"), Path::new("/h/s/history.jsonl")));
        assert!(!covers(Path::new("/h"), Path::new("/hx")));
        assert!(is_vcs_name(".git".as_ref()));
        assert!(is_vcs_name(".GIT".as_ref()));
        assert!(!is_vcs_name(".gitignore".as_ref()));
    }
}
