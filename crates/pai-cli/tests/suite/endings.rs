//! How a turn ends early, through the real binary: a reader that goes away mid-answer and
//! SIGTERM each give their own exit code and an audit row saying why; nothing is saved.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;

use pai_audit::{EventKind, SqliteAudit};
use pai_test_support::{read_request, sse_body, sse_chunks};

use super::Pai;

/// A streaming server on 127.0.0.1 that sends the first piece at once, and the rest
/// (when there is a rest) only once the test says so. Returns the base URL and the
/// trigger.
fn slow_stream() -> (String, mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        if read_request(&mut conn).is_none() {
            return;
        }
        let chunks = sse_chunks(&["Hello", " there", " and more"], 3, 3);
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(sse_body(&chunks[..2], false).as_bytes());
        let _ = conn.flush();
        if wait.recv().is_ok() {
            for _ in 0..50 {
                // Keep writing so the client keeps printing into its closed pipe.
                let _ = conn.write_all(sse_body(&chunks[2..3], false).as_bytes());
                let _ = conn.flush();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        // Hold the connection open until the client has gone.
        let _ = conn.read(&mut [0u8; 1]);
    });
    (format!("http://{addr}/v1"), go)
}

/// Starts `pai s prompt --stream hi` and waits until "Hello" was printed.
fn started(pai: &Pai) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = pai
        .std_cmd()
        .args(["s", "prompt", "--stream", "--no-tools", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = [0u8; 5];
    stdout.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"Hello");
    (child, stdout)
}

fn cancelled_rows(pai: &Pai) -> Vec<String> {
    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    audit
        .events(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Cancelled)
        .map(|e| e.event.content)
        .collect()
}

#[test]
fn a_closed_output_ends_the_turn_with_141_and_records_it() {
    let (url, go) = slow_stream();
    let pai = Pai::new();
    pai.init("s", &url);
    let before = pai.history_bytes("s");
    let (child, stdout) = started(&pai);
    drop(stdout); // `pai … | head -c 5`
    go.send(()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cancelled (output closed)"), "{stderr}");
    // What had arrived when the turn ended: under load one more chunk may land between the
    // failed write and the cancellation taking effect, so the row may hold it too.
    let rows = cancelled_rows(&pai);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("[output closed] Hello there"),
        "{rows:?}"
    );
    assert_eq!(pai.history_bytes("s"), before, "nothing saved");
}

#[test]
fn sigterm_ends_the_turn_with_143_and_records_it() {
    let (url, _go) = slow_stream();
    let pai = Pai::new();
    pai.init("s", &url);
    let before = pai.history_bytes("s");
    let (child, _stdout) = started(&pai);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert_eq!(cancelled_rows(&pai), vec!["[terminated] Hello".to_string()]);
    assert_eq!(pai.history_bytes("s"), before, "nothing saved");
}

#[test]
fn ctrl_c_while_a_chat_reply_streams_cancels_it_records_it_and_the_chat_goes_on() {
    let (url, _go) = slow_stream();
    let pai = Pai::new();
    pai.init("s", &url);
    let before = pai.history_bytes("s");
    // Raw: a rendered answer shows each line once it is complete.
    let Some(mut chat) = pai.spawn_in_pty("s chat --no-tools --raw") else {
        return;
    };
    chat.wait_for("s> ");
    chat.send("hi\r");
    chat.wait_for("Hello");
    // The terminal is in its ordinary mode while a reply streams: Ctrl+C is SIGINT.
    chat.send("\x03");
    chat.wait_for("cancelled (interrupted): the answer was not saved");
    chat.wait_for("s> ");
    chat.send("\x04");
    let (code, screen) = chat.finish();
    assert_eq!(code, Some(0), "{screen:?}");
    assert_eq!(
        cancelled_rows(&pai),
        vec!["[interrupted] Hello".to_string()]
    );
    assert_eq!(pai.history_bytes("s"), before, "nothing saved");
}
