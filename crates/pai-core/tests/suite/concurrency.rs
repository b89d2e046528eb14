//! Concurrent writers: separate `SessionStore`s (as separate `pai` processes would be)
//! serialise through the session's advisory lock.

use std::sync::{Arc, Barrier};
use std::thread;

use pai_core::{HistoryEntry, SessionStore};
use pai_types::Role;
use pretty_assertions::assert_eq;

use super::{create, history_path, jsonl, name, temp_store, turn};

const THREADS: usize = 8;
const TURNS: usize = 25;

/// Large enough that an unserialised write would have room to interleave.
fn padding() -> String {
    "x".repeat(2048)
}

fn question(t: usize, i: usize) -> String {
    format!("t{t} q{i} {}", padding())
}

fn answer(t: usize, i: usize) -> String {
    format!("t{t} a{i}")
}

/// Runs `work(thread index, own store)` on [`THREADS`] threads released together.
fn on_threads(store: &SessionStore, work: impl Fn(usize, SessionStore) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let own = SessionStore::new(store.paths().clone());
            let (work, barrier) = (work.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                work(t, own);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Each thread's turns appear whole (question right before its answer) and in its order.
fn assert_turns_whole_and_ordered(history: &[HistoryEntry], threads: impl Iterator<Item = usize>) {
    let mut next = [0; THREADS];
    for pair in history.chunks(2) {
        let [q, a] = pair else {
            panic!("odd number of entries")
        };
        assert_eq!((q.role, a.role), (Role::User, Role::Assistant));
        let t: usize = q.content[1..q.content.find(' ').unwrap()].parse().unwrap();
        assert_eq!(q.content, question(t, next[t]));
        assert_eq!(a.content, answer(t, next[t]));
        next[t] += 1;
    }
    for t in threads {
        assert_eq!(next[t], TURNS, "thread {t} lost turns");
    }
}

#[test]
fn eight_writers_append_without_interleaving() {
    let (_home, store) = temp_store();
    create(&store, "shared");
    on_threads(&store, |t, own| {
        for i in 0..TURNS {
            own.append(&name("shared"), &turn(&question(t, i), &answer(t, i)))
                .unwrap();
        }
    });

    let text = std::fs::read_to_string(history_path(&store, "shared")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), THREADS * TURNS * 2);
    let parsed: Vec<HistoryEntry> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_turns_whole_and_ordered(&parsed, 0..THREADS);
    assert_eq!(store.snapshot(&name("shared")).unwrap().history, parsed);
}

#[test]
fn concurrent_updates_and_reads_never_lose_history() {
    let (_home, store) = temp_store();
    create(&store, "shared");
    // Even threads append; odd ones change the model, add one mark to the summary (a
    // read-modify-write that loses marks unless serialised) and read the session back.
    on_threads(&store, |t, own| {
        for i in 0..TURNS {
            if t % 2 == 0 {
                own.append(&name("shared"), &turn(&question(t, i), &answer(t, i)))
                    .unwrap();
            } else {
                own.update(&name("shared"), |m| {
                    m.model = format!("model-{t}-{i}");
                    m.summary.push('x');
                    Ok(())
                })
                .unwrap();
                let snap = own.snapshot(&name("shared")).unwrap();
                assert!(snap.meta.model.starts_with("model-"));
                assert_eq!(snap.history.len() % 2, 0, "a reader saw half a turn");
            }
        }
    });

    let snap = store.snapshot(&name("shared")).unwrap();
    assert_eq!(snap.history.len(), THREADS / 2 * TURNS * 2);
    assert_turns_whole_and_ordered(&snap.history, (0..THREADS).step_by(2));
    assert_eq!(
        snap.meta.summary,
        "x".repeat(THREADS / 2 * TURNS),
        "lost updates"
    );
    // The last writer of each odd thread wrote its final model; one of them won.
    let finals: Vec<String> = (1..THREADS)
        .step_by(2)
        .map(|t| format!("model-{t}-{}", TURNS - 1))
        .collect();
    assert!(finals.contains(&snap.meta.model), "{}", snap.meta.model);
}

/// Appending must cost the same whatever the history holds, which no test can time.
/// Instead: `append` succeeds on a history whose middle is corrupt, so it cannot be
/// parsing (or rewriting) what is already there.
#[test]
fn append_does_not_read_the_existing_history() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let path = history_path(&store, "work");
    let [q, a] = turn("old q", "old a");
    let prefix = format!("{}{{broken middle line\n{}", jsonl(&[q]), jsonl(&[a]));
    std::fs::write(&path, &prefix).unwrap();
    assert!(store.snapshot(&name("work")).is_err());

    let new = turn("new q", "new a");
    store.append(&name("work"), &new).unwrap();
    // The existing bytes are untouched and the new entries follow them.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        prefix + &jsonl(&new)
    );
}
