//! One stream driver: the same failure part way through an answer gives the same error,
//! whichever provider's wire format carried the answer. Each case runs against a raw
//! server on 127.0.0.1 that speaks OpenAI's SSE, Anthropic's SSE or Ollama's NDJSON.

use std::io::Write;
use std::time::Duration;

use pai_providers::{ChatEvent, ProviderConfig, ProviderKind};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::{chat, config_at, request};

#[derive(Debug, Clone, Copy)]
enum Wire {
    OpenAi,
    Anthropic,
    Ollama,
}

const ALL: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Ollama];

/// What the raw server does after writing its frames.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// Keeps the connection open and says nothing.
    Stall,
    /// Ends the body properly, without the model having finished.
    End,
    /// Drops the connection in the middle of the chunked body.
    Drop,
}

impl Wire {
    fn config(self, addr: std::net::SocketAddr) -> ProviderConfig {
        let (name, kind, base) = match self {
            Wire::OpenAi => (
                "openai",
                ProviderKind::OpenAiCompatible,
                format!("http://{addr}/v1"),
            ),
            Wire::Anthropic => (
                "anthropic",
                ProviderKind::Anthropic,
                format!("http://{addr}/v1"),
            ),
            Wire::Ollama => ("ollama", ProviderKind::Ollama, format!("http://{addr}")),
        };
        ProviderConfig {
            name: name.into(),
            kind,
            ..config_at(base)
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Wire::OpenAi | Wire::Anthropic => "text/event-stream",
            Wire::Ollama => "application/x-ndjson",
        }
    }

    /// One frame carrying answer text.
    fn text(self, text: &str) -> String {
        match self {
            Wire::OpenAi => format!(
                "data: {}\n\n",
                json!({ "choices": [{ "index": 0, "delta": { "content": text } }] })
            ),
            Wire::Anthropic => format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({ "type": "content_block_delta", "index": 0,
                        "delta": { "type": "text_delta", "text": text } })
            ),
            Wire::Ollama => format!(
                "{}\n",
                json!({ "message": { "role": "assistant", "content": text }, "done": false })
            ),
        }
    }

    /// One frame that is not what the format sends.
    fn garbage(self) -> String {
        match self {
            Wire::OpenAi | Wire::Anthropic => "data: <html>\n\n".into(),
            Wire::Ollama => "<html>\n".into(),
        }
    }
}

/// A one-shot server that answers with `body` as one chunk of a chunked 200, then does
/// what `then` says.
fn serve_once(wire: Wire, body: String, then: Then) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        if pai_test_support::read_request(&mut conn).is_none() {
            return;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
            wire.content_type(),
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.flush();
        match then {
            // Longer than the client's read timeout; the client gives up first.
            Then::Stall => std::thread::sleep(Duration::from_secs(5)),
            Then::End => {
                let _ = conn.write_all(b"0\r\n\r\n");
                let _ = conn.flush();
            }
            Then::Drop => {}
        }
    });
    addr
}

/// Runs one streamed call per wire format, each against a server that sends `body(wire)`
/// then does `then`, and returns what each yielded: its events, and its error with the
/// endpoint's own name replaced by `<endpoint>`.
async fn each_wire(
    body: impl Fn(Wire) -> String,
    then: Then,
    read_timeout: Duration,
) -> Vec<(Wire, Vec<ChatEvent>, String)> {
    let runs = ALL.map(|wire| {
        let addr = serve_once(wire, body(wire), then);
        let mut config = wire.config(addr);
        config.net.read_timeout = read_timeout;
        async move {
            let (events, err) = chat(config, request(true)).await.error();
            let endpoint = match &err {
                pai_providers::ProviderError::StreamCut { at, .. }
                | pai_providers::ProviderError::Malformed { at, .. } => at.to_string(),
                other => panic!("{wire:?}: expected a stream error, got {other:?}"),
            };
            let message = err.to_string().replace(&endpoint, "<endpoint>");
            (wire, events, message)
        }
    });
    futures::future::join_all(runs).await
}

/// Fails unless every wire format yielded `events` and then exactly `message`.
#[track_caller]
fn assert_all_same(
    outcomes: &[(Wire, Vec<ChatEvent>, String)],
    events: &[ChatEvent],
    message: &str,
) {
    for (wire, got_events, got_message) in outcomes {
        assert_eq!(
            (got_events.as_slice(), got_message.as_str()),
            (events, message),
            "{wire:?}"
        );
    }
}

fn half() -> Vec<ChatEvent> {
    vec![ChatEvent::Delta("Half".into())]
}

#[tokio::test]
async fn a_silence_mid_stream_reads_the_same_for_every_provider() {
    let outcomes = each_wire(|w| w.text("Half"), Then::Stall, Duration::from_secs(1)).await;

    assert_all_same(
        &outcomes,
        &half(),
        "the answer from <endpoint> was cut off before it finished (nothing arrived for 1s; \
         raise [network] read_timeout_secs in config.toml for slow models); nothing was saved, \
         try again",
    );
}

#[tokio::test]
async fn an_end_without_a_finish_reads_the_same_for_every_provider() {
    let outcomes = each_wire(|w| w.text("Half"), Then::End, Duration::from_secs(5)).await;

    assert_all_same(
        &outcomes,
        &half(),
        "the answer from <endpoint> was cut off before it finished (the stream ended without \
         a finish reason); nothing was saved, try again",
    );
}

#[tokio::test]
async fn a_dropped_connection_reads_the_same_for_every_provider() {
    let outcomes = each_wire(|w| w.text("Half"), Then::Drop, Duration::from_secs(5)).await;

    let (_, _, first) = &outcomes[0];
    assert!(
        first.starts_with("the answer from <endpoint> was cut off before it finished ("),
        "{first}"
    );
    assert_all_same(&outcomes, &half(), first);
}

#[tokio::test]
async fn an_unreadable_chunk_reads_the_same_for_every_provider() {
    let outcomes = each_wire(
        |w| format!("{}{}{}", w.text("Half"), w.garbage(), w.text("never seen")),
        Then::End,
        Duration::from_secs(5),
    )
    .await;

    assert_all_same(
        &outcomes,
        &half(),
        "<endpoint> sent a response PAI cannot read: a chunk of the stream is not valid \
         (expected value at line 1 column 1)",
    );
}
