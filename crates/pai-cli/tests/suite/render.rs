//! Markdown answers rendered on a terminal while they stream, through the real binary in
//! a pseudo-terminal; `--raw`, `NO_COLOR` and a pipe get the text as the model wrote it.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;

use super::Pai;

/// Streamed in pieces that split lines, markup and the code fence.
const PIECES: &[&str] = &[
    "# Ti",
    "tle\nSome **bo",
    "ld** and `code`.\n- item\n```ru",
    "st\nfn main() {}\n``",
    "`\nlast line",
];

async fn markdown_session() -> (MockOpenAi, Pai) {
    let mock = MockOpenAi::start().await;
    mock.reply_stream(PIECES, 5, 3).await;
    mock.reply_json(&PIECES.concat(), 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    (mock, pai)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_answer_is_rendered_on_a_terminal() {
    let (_mock, pai) = markdown_session().await;
    let Some(screen) = pai.run_in_pty("s prompt --no-tools hi", "") else {
        return;
    };
    // The heading bold, underlined and coloured, without its `#`.
    assert!(
        screen.contains("\u{1b}[1;4;35mTitle\u{1b}[0m"),
        "{screen:?}"
    );
    assert!(!screen.contains("# Title"), "{screen:?}");
    assert!(screen.contains("\u{1b}[1mbold\u{1b}[0m"), "{screen:?}");
    assert!(screen.contains("\u{1b}[36mcode\u{1b}[0m"), "{screen:?}");
    assert!(screen.contains("\u{1b}[33m•\u{1b}[0m item"), "{screen:?}");
    // Rust highlighted: `fn` as a keyword.
    assert!(screen.contains("\u{1b}[34mfn\u{1b}[0m"), "{screen:?}");
    // The last line, which came without a newline, is shown too.
    assert!(screen.contains("last line"), "{screen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_and_no_color_print_the_text_as_written_and_a_pipe_always_gets_it() {
    let (_mock, pai) = markdown_session().await;
    let answer = PIECES.concat();
    let Some(raw) = pai.run_in_pty("s prompt --no-tools --raw hi", "") else {
        return;
    };
    let no_color = pai
        .run_in_pty_with("s prompt --no-tools hi", "", &[("NO_COLOR", "1")])
        .unwrap();
    for screen in [raw, no_color] {
        assert!(!screen.contains('\u{1b}'), "{screen:?}");
        // A terminal turns each \n into \r\n.
        assert!(screen.replace("\r\n", "\n").contains(&answer), "{screen:?}");
    }
    let piped = pai.run(&["s", "prompt", "--no-tools", "again"]).success();
    assert_eq!(piped.stdout, format!("{answer}\n"));
    let streamed = pai
        .run(&["s", "prompt", "--no-tools", "--stream", "again"])
        .success();
    assert_eq!(streamed.stdout, format!("{answer}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_stay_neutralised_when_rendered() {
    let mock = MockOpenAi::start().await;
    let evil = "**bold**\u{1b}]52;c;cm0gLXJmIH4=\u{7}\n```sh\necho \u{1b}[2J\n```\n";
    mock.reply_stream(&[evil], 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let Some(screen) = pai.run_in_pty("s prompt --no-tools hi", "") else {
        return;
    };
    assert!(
        screen.contains("\u{241b}]52;c;cm0gLXJmIH4=\u{2407}"),
        "{screen:?}"
    );
    assert!(!screen.contains("\u{1b}]"), "{screen:?}");
    assert!(!screen.contains("\u{1b}[2J"), "{screen:?}");
    assert!(screen.contains("\u{1b}[1mbold"), "{screen:?}");
}

#[test]
fn the_words_of_a_paragraph_show_before_its_line_ends() {
    use std::io::Write;
    // Sends the start of a paragraph, then the rest only once the test says so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        if pai_test_support::read_request(&mut conn).is_none() {
            return;
        }
        let chunks =
            pai_test_support::sse_chunks(&["Some **bold** words and", " the rest.\n"], 3, 3);
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(pai_test_support::sse_body(&chunks[..2], false).as_bytes());
        let _ = conn.flush();
        if wait.recv().is_ok() {
            let _ = conn.write_all(pai_test_support::sse_body(&chunks[2..], true).as_bytes());
        }
    });
    let pai = Pai::new();
    pai.init("s", &format!("http://{addr}/v1"));
    let Some(mut run) = pai.spawn_in_pty("s prompt --no-tools hi") else {
        return;
    };
    // Styled while the line is still open: every word but the unfinished last one.
    run.wait_for("\u{1b}[1mbold\u{1b}[0m words ");
    assert!(!run.screen().contains("and"), "{:?}", run.screen());
    go.send(()).unwrap();
    run.wait_for("and the rest.");
    let (code, screen) = run.finish();
    assert_eq!(code, Some(0), "{screen:?}");
}
