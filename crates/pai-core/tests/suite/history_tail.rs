//! One rule for the last line of `history.jsonl`, on read and on append: a line that does
//! not parse is not part of the history. Readers skip it; the next append moves it to
//! `history.rejected` and cuts it off, so it never becomes a corrupt middle line.
//! Also: what the store's writes do to the directories, and reads that write nothing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use pai_core::CoreError;
use pai_types::Role;
use pretty_assertions::assert_eq;

use super::{create, entry, history_path, jsonl, name, temp_store, turn};

fn append_raw(path: &std::path::Path, bytes: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_bytes())
        .unwrap();
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_complete_unreadable_last_line_is_skipped_then_moved_aside() {
    // With and without blank lines after it, and torn (no newline) too.
    for bad in [
        "{\"role\":\"user\",\"content\":\"no timestamp\"}\n",
        "not json\n\n  \n",
        "{\"role\":\"user\",\"cont",
    ] {
        let (_home, store) = temp_store();
        create(&store, "work");
        let path = history_path(&store, "work");
        let first = turn("q1", "a1");
        store.append(&name("work"), &first).unwrap();
        append_raw(&path, bad);

        assert_eq!(store.snapshot(&name("work")).unwrap().history, first);

        let second = turn("q2", "a2");
        store.append(&name("work"), &second).unwrap();
        let third = turn("q3", "a3");
        store.append(&name("work"), &third).unwrap();

        let all: Vec<_> = first.iter().chain(&second).chain(&third).cloned().collect();
        assert_eq!(
            store.snapshot(&name("work")).unwrap().history,
            all,
            "{bad:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), jsonl(&all));
        let rejected = path.with_file_name("history.rejected");
        assert_eq!(
            std::fs::read_to_string(&rejected).unwrap(),
            format!("{}\n", bad.trim_end()),
            "{bad:?}"
        );
        assert_eq!(mode(&rejected), 0o600);
    }
}

#[test]
fn rejected_lines_accumulate_and_good_last_lines_stay() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let path = history_path(&store, "work");
    for bad in ["one\n", "two\n"] {
        append_raw(&path, bad);
        store
            .append(&name("work"), &[entry(Role::User, bad.trim())])
            .unwrap();
    }
    let rejected = path.with_file_name("history.rejected");
    assert_eq!(std::fs::read_to_string(&rejected).unwrap(), "one\ntwo\n");
    assert_eq!(store.snapshot(&name("work")).unwrap().history.len(), 2);

    // A readable last line followed by blank lines is left where it is.
    append_raw(&path, "\n  \n");
    store
        .append(&name("work"), &[entry(Role::User, "three")])
        .unwrap();
    assert_eq!(store.snapshot(&name("work")).unwrap().history.len(), 3);
    assert_eq!(std::fs::read_to_string(&rejected).unwrap(), "one\ntwo\n");
}

#[test]
fn an_unreadable_line_with_another_after_it_is_still_corruption() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let path = history_path(&store, "work");
    append_raw(&path, "garbage\n\n");
    append_raw(&path, &jsonl(&turn("q", "a")));
    let err = store.snapshot(&name("work")).unwrap_err();
    assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn writes_restrict_a_home_open_to_others_and_reads_do_not() {
    let (home, store) = temp_store();
    let sessions = home.home().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    create(&store, "work");
    for dir in [home.home(), sessions.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    store.snapshot(&name("work")).unwrap();
    store.list().unwrap();
    assert_eq!((mode(&home.home()), mode(&sessions)), (0o755, 0o755));

    store.append(&name("work"), &turn("q", "a")).unwrap();
    assert_eq!((mode(&home.home()), mode(&sessions)), (0o700, 0o700));
    assert_eq!(mode(&sessions.join("work")), 0o700);
}

/// A reader takes its shared lock on a read-only handle: with the lock file replaced by a
/// directory (which no one, root included, can open for writing), reads still work.
#[test]
fn reads_never_open_the_lock_file_for_writing() {
    let (_home, store) = temp_store();
    create(&store, "work");
    store.append(&name("work"), &turn("q", "a")).unwrap();
    let lock = history_path(&store, "work").with_file_name(".lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();

    assert_eq!(store.snapshot(&name("work")).unwrap().history.len(), 2);
    store.load_meta(&name("work")).unwrap();
    // A write does need it.
    assert!(store.append(&name("work"), &turn("q", "a")).is_err());
}
