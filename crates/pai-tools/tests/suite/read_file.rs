use pai_tools::{ToolContext, ToolError, ToolOutput};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{Sandbox, call, error, text};

fn numbered(lines: std::ops::RangeInclusive<usize>) -> String {
    lines.map(|i| format!("line {i}\n")).collect()
}

#[tokio::test]
async fn reads_a_whole_small_file_as_is() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "notes/todo.md",
        "# Todo\n\n- héllo wörld\r\n- last, no newline",
    );
    let out = call(
        "read_file",
        json!({ "path": "notes/todo.md" }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(
        out,
        Ok(ToolOutput::text(
            "# Todo\n\n- héllo wörld\n- last, no newline\n"
        ))
    );
    assert_eq!(
        text(
            "read_file",
            json!({ "path": "notes/../notes/./todo.md", "offset": 3, "limit": 1 }),
            &sandbox.cx()
        )
        .await,
        "- héllo wörld\n[… more: lines 3–3 of 'notes/todo.md' shown; call read_file with offset=4]"
    );
}

#[tokio::test]
async fn pages_by_line_with_offset_and_limit() {
    let sandbox = Sandbox::new();
    sandbox.file("n.txt", numbered(1..=10));
    let cx = sandbox.cx();
    let first = call("read_file", json!({ "path": "n.txt", "limit": 4 }), &cx)
        .await
        .unwrap();
    assert_eq!(
        first,
        ToolOutput {
            content: numbered(1..=4)
                + "[… more: lines 1–4 of 'n.txt' shown; call read_file with offset=5]",
            truncated: true,
        }
    );
    let rest = call("read_file", json!({ "path": "n.txt", "offset": 5 }), &cx)
        .await
        .unwrap();
    assert_eq!(rest, ToolOutput::text(numbered(5..=10)));
    let past = error("read_file", json!({ "path": "n.txt", "offset": 12 }), &cx).await;
    assert_eq!(
        past,
        ToolError::InvalidArguments(
            "offset 12 is past the end of 'n.txt', which has 10 lines".into()
        )
    );
    assert!(matches!(
        call("read_file", json!({ "path": "n.txt", "offset": 0 }), &cx).await,
        Err(ToolError::InvalidArguments(_))
    ));
}

#[tokio::test]
async fn a_big_file_is_paged_within_the_output_cap_and_can_be_read_on() {
    let sandbox = Sandbox::new();
    // ~1.1 MB: far over both the tool's 256 KiB and the session's 32 KiB.
    sandbox.file("big.txt", numbered(1..=100_000));
    let cx = sandbox.cx();
    let page = call("read_file", json!({ "path": "big.txt" }), &cx)
        .await
        .unwrap();
    assert!(page.truncated);
    assert!(
        page.content.len() <= cx.max_output_bytes,
        "{}",
        page.content.len()
    );
    // The tool's own marker, not the registry's blunt cut, ends the page.
    assert!(!page.content.contains("[… truncated"), "{}", page.content);
    let marker = page.content.lines().last().unwrap();
    let next: usize = marker
        .rsplit_once("offset=")
        .and_then(|(_, n)| n.strip_suffix(']'))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(page.content, numbered(1..=next - 1) + marker);

    let second = call(
        "read_file",
        json!({ "path": "big.txt", "offset": next }),
        &cx,
    )
    .await
    .unwrap();
    assert!(
        second.content.starts_with(&format!("line {next}\n")),
        "{}",
        &second.content[..40]
    );

    // With a larger session cap and no line limit to speak of, the tool's 256 KiB cap holds.
    let roomy = ToolContext {
        max_output_bytes: 4 * 1024 * 1024,
        ..cx.clone()
    };
    let page = call(
        "read_file",
        json!({ "path": "big.txt", "limit": 1_000_000 }),
        &roomy,
    )
    .await
    .unwrap();
    assert!(page.truncated);
    assert!(
        page.content.len() <= 256 * 1024 + 200,
        "{}",
        page.content.len()
    );
    assert!(page.content.len() > 200 * 1024, "{}", page.content.len());
}

#[tokio::test]
async fn a_line_longer_than_the_page_is_cut_with_a_marker() {
    let sandbox = Sandbox::new();
    sandbox.file("min.js", format!("{}\nnext\n", "é".repeat(100_000)));
    let cx = sandbox.cx();
    let out = call("read_file", json!({ "path": "min.js" }), &cx)
        .await
        .unwrap();
    assert!(out.truncated);
    let (body, marker) = out.content.rsplit_once('\n').unwrap();
    assert!(
        body.chars().all(|c| c == 'é'),
        "cut on a character boundary"
    );
    assert!(marker.starts_with("[… line 1 is longer than"), "{marker}");
    assert!(
        marker.ends_with("call read_file with offset=2 for the lines after it]"),
        "{marker}"
    );
    assert_eq!(
        text("read_file", json!({ "path": "min.js", "offset": 2 }), &cx).await,
        "next\n"
    );
}

#[tokio::test]
async fn binary_files_are_refused() {
    let sandbox = Sandbox::new();
    sandbox.file("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    // Latin-1, not UTF-8.
    sandbox.file("latin1.txt", b"caf\xe9 cr\xe8me\n");
    // Text first, a NUL far past the sniffed head.
    let mut late = "ok\n".repeat(10_000).into_bytes();
    late.extend_from_slice(b"\0tail\n");
    sandbox.file("late.bin", late);
    let cx = ToolContext {
        max_output_bytes: 1024 * 1024,
        ..sandbox.cx()
    };
    for name in ["image.png", "latin1.txt", "late.bin"] {
        let err = error("read_file", json!({ "path": name, "limit": 100_000 }), &cx).await;
        assert_eq!(
            err.to_string(),
            format!(
                "'{name}' is not a text file (it has NUL bytes or is not valid UTF-8); read_file reads text files only"
            )
        );
    }
}

#[tokio::test]
async fn directories_empty_and_missing_files_say_what_to_do() {
    let sandbox = Sandbox::new();
    sandbox.file("dir/empty.txt", "");
    let cx = sandbox.cx();
    assert_eq!(
        error("read_file", json!({ "path": "dir" }), &cx)
            .await
            .to_string(),
        "'dir' is a directory; use list_dir to see what it holds"
    );
    assert_eq!(
        text("read_file", json!({ "path": "dir/empty.txt" }), &cx).await,
        "('dir/empty.txt' is empty)"
    );
    assert_eq!(
        error("read_file", json!({ "path": "dir/nope.txt" }), &cx).await,
        ToolError::NotFound("dir/nope.txt".into())
    );
}
