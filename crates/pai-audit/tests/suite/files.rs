use std::path::Path;

use pai_audit::{AuditError, AuditSink, EventKind, SqliteAudit};

use super::{open, sample, temp_log};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn companion(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

#[cfg(unix)]
#[test]
fn the_log_and_its_wal_and_shm_files_are_private() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    audit.record(&sample(EventKind::Prompt, 1)).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_extension("head")), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let mut seen = 0;
    for suffix in ["-wal", "-shm"] {
        let c = companion(&path, suffix);
        if c.exists() {
            seen += 1;
            assert_eq!(mode(&c), 0o600, "{}", c.display());
        }
    }
    // With a connection open in WAL mode both companions exist.
    assert_eq!(seen, 2);
}

#[cfg(unix)]
#[test]
fn loose_permissions_on_existing_files_are_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let (_home, path) = temp_log();
    let first = open(&path);
    first.record(&sample(EventKind::Prompt, 1)).unwrap();
    let loosen = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    loosen(&path);
    loosen(&companion(&path, "-wal"));
    loosen(&companion(&path, "-shm"));

    let _second = open(&path);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&companion(&path, "-wal")), 0o600);
    assert_eq!(mode(&companion(&path, "-shm")), 0o600);
}

#[test]
fn a_garbage_file_gives_a_clear_error_not_a_panic() {
    let (_home, path) = temp_log();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for garbage in [
        b"not a database".to_vec(),
        b"\x00\xffnot a database at all, just bytes\n".repeat(300),
    ] {
        std::fs::write(&path, &garbage).unwrap();
        let err = SqliteAudit::open(&path).unwrap_err();
        assert!(matches!(err, AuditError::NotADatabase { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("move it and audit.head aside"), "{msg}");
    }
}

#[test]
fn a_directory_in_place_of_the_file_gives_a_clear_error() {
    let (_home, path) = temp_log();
    std::fs::create_dir_all(&path).unwrap();
    let err = SqliteAudit::open(&path).unwrap_err();
    assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot open the audit log at "), "{msg}");
    assert!(msg.ends_with("check permissions of PAI_HOME"), "{msg}");
}

#[test]
fn missing_parent_directories_are_created() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("a").join("b").join("audit.db");
    let audit = open(&path);
    audit.record(&sample(EventKind::Summary, 1)).unwrap();
    assert!(path.is_file());
}

#[test]
fn several_pai_processes_creating_the_log_at_once_all_get_in() {
    // SQLite answers BUSY at once, without waiting, to a second connection switching a
    // brand-new file to WAL; opening must wait its turn instead of failing.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let log = SqliteAudit::open_keyed(&path, super::key())?;
                    log.record(&sample(EventKind::Prompt, 1))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let report = super::open(&path).verify().unwrap();
        assert_eq!(report.rows, 4);
        assert!(report.is_intact());
    }
}
