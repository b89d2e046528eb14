//! Path confinement for the file tools: every path is resolved to a canonical one (no `..`,
//! no symlinks) and must lie inside one of the context's roots.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::tool::{ToolContext, ToolError};

/// A path that passed confinement.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// Canonical and inside a root.
    pub path: PathBuf,
    /// How to show it to the model: relative to the first root when under it, so the
    /// model can pass it back as is.
    pub shown: String,
}

/// Resolves a path that must already exist (read_file, list_dir, search_files, sqlite_query).
pub(super) fn resolve_existing(cx: &ToolContext, requested: &str) -> Result<Resolved, ToolError> {
    let roots = canonical_roots(cx)?;
    let joined = join(&roots, requested)?;
    match std::fs::canonicalize(&joined) {
        Ok(path) => confine(&roots, requested, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Say "outside" rather than "not found" for a path outside the roots, so a
            // model cannot probe what exists there.
            let would_be = resolve_missing(&roots, requested, &joined)?;
            Err(ToolError::NotFound(would_be.shown))
        }
        Err(e) => Err(ToolError::Failed(format!("cannot open '{requested}': {e}"))),
    }
}

/// Resolves a path that may not exist yet (write_file): the deepest existing ancestor is
/// canonicalised and the missing rest, which may not contain `..`, is appended to it.
pub(super) fn resolve_for_write(cx: &ToolContext, requested: &str) -> Result<Resolved, ToolError> {
    let roots = canonical_roots(cx)?;
    let joined = join(&roots, requested)?;
    resolve_missing(&roots, requested, &joined)
}

fn resolve_missing(
    roots: &[PathBuf],
    requested: &str,
    joined: &Path,
) -> Result<Resolved, ToolError> {
    let components: Vec<Component<'_>> = joined.components().collect();
    // `symlink_metadata` so a dangling symlink counts as existing: it is then refused below
    // instead of being written through.
    let mut existing = components.len();
    loop {
        let prefix: PathBuf = components[..existing].iter().collect();
        match std::fs::symlink_metadata(&prefix) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound && existing > 1 => existing -= 1,
            Err(e) => {
                return Err(ToolError::Failed(format!(
                    "cannot use '{requested}': {} ({e})",
                    prefix.display()
                )));
            }
        }
    }
    let prefix: PathBuf = components[..existing].iter().collect();
    let mut path = std::fs::canonicalize(&prefix).map_err(|e| {
        ToolError::Failed(format!(
            "cannot use '{requested}': '{}' cannot be resolved ({e}); \
             it may be a symbolic link whose target does not exist",
            prefix.display()
        ))
    })?;
    for component in &components[existing..] {
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
    confine(roots, requested, path)
}

fn canonical_roots(cx: &ToolContext) -> Result<Vec<PathBuf>, ToolError> {
    let roots: Vec<PathBuf> = cx
        .roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    if roots.is_empty() {
        return Err(ToolError::Failed(
            "no directory is allowed for file tools in this session; \
             the user must allow one before files can be used"
                .into(),
        ));
    }
    Ok(roots)
}

fn join(roots: &[PathBuf], requested: &str) -> Result<PathBuf, ToolError> {
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
    Ok(roots[0].join(requested))
}

fn confine(roots: &[PathBuf], requested: &str, path: PathBuf) -> Result<Resolved, ToolError> {
    // `Path::starts_with` compares whole components: `/root-evil` is not under `/root`.
    if !roots.iter().any(|root| path.starts_with(root)) {
        return Err(ToolError::OutsideRoots {
            path: requested.to_string(),
            roots: roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let shown = show(&roots[0], &path);
    Ok(Resolved { path, shown })
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

    use super::show;

    #[test]
    fn shown_paths_are_relative_to_the_first_root() {
        assert_eq!(show(Path::new("/r"), Path::new("/r")), ".");
        assert_eq!(show(Path::new("/r"), Path::new("/r/a/b")), "a/b");
        assert_eq!(show(Path::new("/r"), Path::new("/r2/a")), "/r2/a");
    }
}
