//! The one driver of every streamed answer. A provider only says what each frame of its
//! wire format means ([`WireFormat`]); this module reads the body, splits it into frames
//! (SSE or NDJSON), assembles tool calls from their fragments and enforces the order
//! [`ChatEvent`] promises: text deltas, then the complete tool calls, then usage, then
//! `Finished`. Every way a stream can fail (a silence past the read timeout, a dropped
//! connection, a frame PAI cannot read, an end before the model finished) is turned into
//! an error here, so it reads the same whichever provider it came from.

use std::collections::{BTreeMap, VecDeque};

use futures::{Stream, StreamExt};
use pai_types::{ToolCall, Usage};
use reqwest::StatusCode;

use crate::error::{ProviderError, Result, one_line};
use crate::http::{ErrorContext, classify, root_cause};
use crate::provider::{ChatEvent, ChatStream};

/// How a body is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events: `event:` and `data:` lines, a blank line ends each.
    Sse,
    /// One JSON object per line.
    Lines,
}

/// One frame of a stream: an SSE event (`event` is empty when none was named), or one
/// NDJSON line as `data`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub event: &'a str,
    pub data: &'a str,
}

/// What a frame says, in PAI's terms.
#[derive(Debug, PartialEq)]
pub(crate) enum Wire {
    /// Answer text, shown as it arrives.
    Text(String),
    /// A piece of one tool call; the call is complete when the model finishes.
    Tool(ToolPart),
    /// Token counts so far; a later report replaces an earlier one, field by field.
    Usage {
        prompt: Option<u64>,
        completion: Option<u64>,
    },
    /// Why the model stopped (it may say so before it is done sending).
    Reason(String),
    /// The model finished: its answer is whole.
    Finish,
    /// Nothing after this frame belongs to the answer.
    End,
}

/// A fragment of the tool call at `index`: fields present here extend the call.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ToolPart {
    pub index: usize,
    /// Replaces the id so far when not empty.
    pub id: Option<String>,
    /// Appended to the name so far.
    pub name: Option<String>,
    /// Appended to the argument text so far.
    pub arguments: Option<String>,
    /// The arguments to use if no argument text arrives.
    pub fallback: Option<String>,
}

/// Why a frame gave no events.
#[derive(Debug, PartialEq)]
pub(crate) enum WireError {
    /// The frame is not what the format sends; the parser's complaint.
    Unreadable(String),
    /// The server reported an error in the stream, with the HTTP status its kind
    /// stands for when it named one.
    Reported {
        status: Option<StatusCode>,
        message: String,
    },
}

/// A provider's wire format: what its frames mean, and its conventions.
pub(crate) trait WireFormat: Send + 'static {
    const FRAMING: Framing;
    /// Ids for tool calls the server sent without one: `{prefix}_{index}`.
    const ID_PREFIX: &'static str;
    /// The finish reason when the server gave none.
    const DEFAULT_REASON: &'static str;

    /// Appends to `out` what `frame` says.
    fn decode(&mut self, frame: Frame<'_>, out: &mut Vec<Wire>) -> Result<(), WireError>;
}

/// The events of `body`, a streamed answer in `format`; errors name `cx`'s endpoint.
pub(crate) fn drive<F, B>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + Unpin + 'static,
    format: F,
    cx: ErrorContext,
) -> ChatStream
where
    F: WireFormat,
    B: AsRef<[u8]>,
{
    let assembler = Assembler::new(format, cx);
    Box::pin(futures::stream::unfold(
        (body, assembler),
        |(mut body, mut a)| async move {
            loop {
                if let Some(event) = a.out.pop_front() {
                    return Some((event, (body, a)));
                }
                if a.closed {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => a.feed(chunk.as_ref()),
                    Some(Err(err)) => a.transport(&err),
                    None => a.end(),
                }
            }
        },
    ))
}

/// The events of a whole (non-streamed) reply that `wires` describe; it must finish.
pub(crate) fn assemble<F: WireFormat>(
    format: F,
    cx: ErrorContext,
    wires: Vec<Wire>,
) -> Result<Vec<ChatEvent>> {
    let mut a = Assembler::new(format, cx);
    a.apply(wires);
    a.end();
    a.out.into_iter().collect()
}

/// A tool call being assembled.
#[derive(Debug, Default)]
struct Partial {
    id: Option<String>,
    name: String,
    arguments: String,
    fallback: Option<String>,
}

/// An SSE event being read, line by line.
#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    data: String,
    has_data: bool,
}

/// The state of one stream: bytes in, [`ChatEvent`]s (or one final error) out.
struct Assembler<F> {
    format: F,
    cx: ErrorContext,
    lines: LineBuffer,
    sse: SseEvent,
    calls: BTreeMap<usize, Partial>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    reason: Option<String>,
    finished: bool,
    /// Set once the answer ended or failed: nothing more is read.
    closed: bool,
    out: VecDeque<Result<ChatEvent>>,
    /// `-vv`: each line read is logged.
    wire: bool,
}

impl<F: WireFormat> Assembler<F> {
    fn new(format: F, cx: ErrorContext) -> Self {
        Self {
            format,
            cx,
            lines: LineBuffer::default(),
            sse: SseEvent::default(),
            calls: BTreeMap::new(),
            prompt_tokens: None,
            completion_tokens: None,
            reason: None,
            finished: false,
            closed: false,
            out: VecDeque::new(),
            wire: crate::http::wire_on(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        for line in self.lines.push(chunk) {
            if self.closed {
                break;
            }
            self.line(&line);
        }
    }

    /// The body ended cleanly: a last line without its newline still counts, but an
    /// answer the model did not finish was cut off.
    fn end(&mut self) {
        if !self.closed
            && let Some(rest) = self.lines.rest()
        {
            self.line(&rest);
        }
        if !self.closed && F::FRAMING == Framing::Sse {
            self.dispatch();
        }
        if !self.closed {
            self.close();
        }
    }

    fn transport(&mut self, err: &reqwest::Error) {
        let detail = if err.is_timeout() {
            format!(
                "nothing arrived for {}s; raise [network] read_timeout_secs in config.toml for slow models",
                self.cx.read_timeout.as_secs()
            )
        } else {
            one_line(&root_cause(err))
        };
        self.fail(ProviderError::StreamCut {
            at: self.cx.at.clone(),
            detail,
        });
    }

    fn line(&mut self, line: &[u8]) {
        if self.wire && !line.iter().all(u8::is_ascii_whitespace) {
            crate::http::wire(&self.cx, "\u{2190}", line);
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return self.fail(ProviderError::Malformed {
                at: self.cx.at.clone(),
                detail: "the stream is not UTF-8 text".into(),
            });
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        match F::FRAMING {
            Framing::Lines => {
                let line = line.trim();
                if !line.is_empty() {
                    self.frame("", line);
                }
            }
            Framing::Sse => self.sse_line(line),
        }
    }

    fn sse_line(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return; // a comment, often a keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.sse.event = value.to_string(),
            "data" => {
                if self.sse.has_data {
                    self.sse.data.push('\n');
                }
                self.sse.data.push_str(value);
                self.sse.has_data = true;
            }
            _ => {} // `id`, `retry` and unknown fields mean nothing here
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.sse);
        if event.has_data {
            self.frame(&event.event, &event.data);
        }
    }

    fn frame(&mut self, event: &str, data: &str) {
        let mut wires = Vec::new();
        match self.format.decode(Frame { event, data }, &mut wires) {
            Ok(()) => self.apply(wires),
            Err(err) => {
                let err = self.wire_error(event, err);
                self.fail(err);
            }
        }
    }

    fn wire_error(&self, event: &str, err: WireError) -> ProviderError {
        let at = self.cx.at.clone();
        match err {
            WireError::Unreadable(why) => {
                let which = match event {
                    "" => String::new(),
                    event => format!(" ('{event}' event)"),
                };
                ProviderError::Malformed {
                    at,
                    detail: format!(
                        "a chunk of the stream{which} is not valid ({})",
                        one_line(&why)
                    ),
                }
            }
            WireError::Reported {
                status: Some(status),
                message,
            } => {
                // Attempts counted before the stream opened are not this error's.
                let cx = ErrorContext {
                    log: Default::default(),
                    ..self.cx.clone()
                };
                classify(status, &message, "", &cx)
            }
            WireError::Reported {
                status: None,
                message,
            } => ProviderError::Malformed {
                at,
                detail: format!(
                    "the server reported an error mid-stream: {}",
                    one_line(&message)
                ),
            },
        }
    }

    fn apply(&mut self, wires: Vec<Wire>) {
        for wire in wires {
            if self.closed {
                return;
            }
            match wire {
                Wire::Text(text) => {
                    if !text.is_empty() {
                        self.out.push_back(Ok(ChatEvent::Delta(text)));
                    }
                }
                Wire::Tool(part) => {
                    let call = self.calls.entry(part.index).or_default();
                    if let Some(id) = part.id.filter(|id| !id.is_empty()) {
                        call.id = Some(id);
                    }
                    call.name.push_str(part.name.as_deref().unwrap_or_default());
                    call.arguments
                        .push_str(part.arguments.as_deref().unwrap_or_default());
                    if part.fallback.is_some() {
                        call.fallback = part.fallback;
                    }
                }
                Wire::Usage { prompt, completion } => {
                    self.prompt_tokens = prompt.or(self.prompt_tokens);
                    self.completion_tokens = completion.or(self.completion_tokens);
                }
                Wire::Reason(reason) => self.reason = Some(reason),
                Wire::Finish => self.finished = true,
                Wire::End => self.close(),
            }
        }
    }

    /// Ends the answer: the whole of it in contract order if the model finished, else
    /// the error that says it was cut off.
    fn close(&mut self) {
        if !self.finished {
            return self.fail(ProviderError::StreamCut {
                at: self.cx.at.clone(),
                detail: "the stream ended without a finish reason".into(),
            });
        }
        self.closed = true;
        for (index, call) in std::mem::take(&mut self.calls) {
            let arguments = match call.fallback {
                Some(fallback) if call.arguments.trim().is_empty() => fallback,
                _ => call.arguments,
            };
            self.out.push_back(Ok(ChatEvent::ToolCall(ToolCall {
                id: call
                    .id
                    .unwrap_or_else(|| format!("{}_{index}", F::ID_PREFIX)),
                name: call.name,
                arguments,
            })));
        }
        if self.prompt_tokens.is_some() || self.completion_tokens.is_some() {
            self.out.push_back(Ok(ChatEvent::Usage(Usage {
                prompt_tokens: self.prompt_tokens.unwrap_or(0),
                completion_tokens: self.completion_tokens.unwrap_or(0),
                estimated: false,
            })));
        }
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| F::DEFAULT_REASON.to_string());
        self.out.push_back(Ok(ChatEvent::Finished { reason }));
    }

    fn fail(&mut self, err: ProviderError) {
        self.out.push_back(Err(self.cx.redact(err)));
        self.closed = true;
    }
}

/// Splits a byte stream into lines. A line may arrive in several chunks and a chunk may
/// hold several lines, or end inside a multi-byte character: only whole lines come out.
#[derive(Debug, Default)]
struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// The lines `chunk` completes, without their `\n`.
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        // Only the new bytes can hold a newline the buffer has not seen.
        let mut from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut lines = Vec::new();
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            lines.push(self.buf[start..end].to_vec());
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        lines
    }

    /// What is left when the stream ends: a last line with no newline after it.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Endpoint, Secrets};
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    /// A format whose frames are `text:…`, `tool:index:name:args`, `finish`, `end`,
    /// `error:…`: enough to exercise the driver alone.
    struct Toy;

    impl WireFormat for Toy {
        const FRAMING: Framing = Framing::Sse;
        const ID_PREFIX: &'static str = "toy";
        const DEFAULT_REASON: &'static str = "done";

        fn decode(&mut self, frame: Frame<'_>, out: &mut Vec<Wire>) -> Result<(), WireError> {
            let data = frame.data;
            if let Some(text) = data.strip_prefix("text:") {
                out.push(Wire::Text(text.into()));
            } else if let Some(tool) = data.strip_prefix("tool:") {
                let mut parts = tool.splitn(3, ':');
                let index = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
                out.push(Wire::Tool(ToolPart {
                    index,
                    name: parts.next().map(str::to_string),
                    arguments: parts.next().map(str::to_string),
                    fallback: Some("{}".into()),
                    ..ToolPart::default()
                }));
            } else if data == "finish" {
                out.extend([
                    Wire::Usage {
                        prompt: Some(3),
                        completion: None,
                    },
                    Wire::Finish,
                ]);
            } else if data == "end" {
                out.push(Wire::End);
            } else if let Some(message) = data.strip_prefix("error:") {
                return Err(WireError::Reported {
                    status: None,
                    message: message.into(),
                });
            } else {
                return Err(WireError::Unreadable(format!("unknown frame {data:?}")));
            }
            Ok(())
        }
    }

    fn cx() -> ErrorContext {
        ErrorContext {
            at: Endpoint {
                provider: "toy".into(),
                url: "http://127.0.0.1:1".into(),
            },
            model: "m".into(),
            key_hint: String::new(),
            read_timeout: Duration::from_secs(7),
            log: Default::default(),
            secrets: Secrets::new(["sk-secret-123456"]),
            proxy: None,
        }
    }

    fn run(chunks: &[&str]) -> Vec<Result<ChatEvent>> {
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, reqwest::Error>(c.as_bytes().to_vec()))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(drive(body, Toy, cx()).collect())
    }

    fn texts(events: Vec<Result<ChatEvent>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                Ok(event) => format!("{event:?}"),
                Err(err) => format!("error: {err}"),
            })
            .collect()
    }

    #[test]
    fn calls_are_held_until_the_finish_and_usage_comes_last() {
        let body = "data: tool:1:clock:\n\ndata: text:a\n\ndata: tool:0:re\n\n\
                    data: tool:0:ad:{\"p\"\ndata: :1}\n\ndata: text:b\n\ndata: finish\n\n";
        let events = run(&[body]);
        assert_eq!(
            texts(events),
            vec![
                r#"Delta("a")"#.to_string(),
                r#"Delta("b")"#.into(),
                r#"ToolCall(ToolCall { id: "toy_0", name: "read", arguments: "{\"p\"\n:1}" })"#
                    .into(),
                r#"ToolCall(ToolCall { id: "toy_1", name: "clock", arguments: "{}" })"#.into(),
                "Usage(Usage { prompt_tokens: 3, completion_tokens: 0, estimated: false })".into(),
                r#"Finished { reason: "done" }"#.into(),
            ]
        );
    }

    #[test]
    fn a_body_split_anywhere_reads_the_same() {
        let body = "event: x\r\ndata: text:Grüße\r\n\r\n: keep-alive\n\ndata: finish\n\n";
        let whole = texts(run(&[body]));
        for cut in 1..body.len() {
            if !body.is_char_boundary(cut) {
                continue;
            }
            assert_eq!(
                texts(run(&[&body[..cut], &body[cut..]])),
                whole,
                "cut {cut}"
            );
        }
        let bytes = body.as_bytes();
        let mut byte_chunks = Vec::new();
        for b in bytes {
            byte_chunks.push(vec![*b]);
        }
        let stream = futures::stream::iter(byte_chunks.into_iter().map(Ok::<_, reqwest::Error>));
        let events = futures::executor::block_on(drive(stream, Toy, cx()).collect::<Vec<_>>());
        assert_eq!(texts(events), whole);
    }

    #[test]
    fn an_end_without_finish_is_cut_off_after_the_text() {
        let events = texts(run(&["data: text:Half\n\n"]));
        assert_eq!(
            events,
            vec![
                r#"Delta("Half")"#.to_string(),
                "error: the answer from toy at http://127.0.0.1:1 was cut off before it finished \
                 (the stream ended without a finish reason); nothing was saved, try again"
                    .into(),
            ]
        );
        // An explicit end marker without a finish is the same cut.
        assert_eq!(texts(run(&["data: text:Half\n\ndata: end\n\n"])), events);
    }

    #[test]
    fn nothing_after_the_end_is_read() {
        let events = texts(run(&["data: finish\n\ndata: end\n\ndata: garbage\n\n"]));
        assert_eq!(
            events.last().map(String::as_str),
            Some(r#"Finished { reason: "done" }"#)
        );
    }

    #[test]
    fn a_last_event_without_its_blank_line_still_counts() {
        let events = texts(run(&["data: text:x\n\ndata: finish"]));
        assert_eq!(
            events.last().map(String::as_str),
            Some(r#"Finished { reason: "done" }"#)
        );
    }

    #[test]
    fn errors_end_the_stream_and_are_scrubbed() {
        let events = texts(run(&[
            "data: text:a\n\ndata: error:bad key sk-secret-123456\n\ndata: text:b\n\n",
        ]));
        assert_eq!(
            events,
            vec![
                r#"Delta("a")"#.to_string(),
                "error: toy at http://127.0.0.1:1 sent a response PAI cannot read: the server \
                 reported an error mid-stream: bad key [REDACTED]"
                    .into(),
            ]
        );
        let events = texts(run(&["data: <html>\n\n"]));
        assert_eq!(
            events,
            vec![
                "error: toy at http://127.0.0.1:1 sent a response PAI cannot read: a chunk of the \
                 stream is not valid (unknown frame \"<html>\")"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_whole_reply_is_assembled_the_same_way() {
        let events = assemble(
            Toy,
            cx(),
            vec![
                Wire::Text("hi".into()),
                Wire::Reason("stop".into()),
                Wire::Finish,
            ],
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                ChatEvent::Delta("hi".into()),
                ChatEvent::Finished {
                    reason: "stop".into()
                }
            ]
        );
        assert!(matches!(
            assemble(Toy, cx(), vec![Wire::Text("hi".into())]),
            Err(ProviderError::StreamCut { .. })
        ));
    }

    #[test]
    fn line_buffer_joins_lines_split_across_chunks() {
        let mut lines = LineBuffer::default();
        assert_eq!(lines.push(b"{\"a\":"), Vec::<Vec<u8>>::new());
        assert_eq!(lines.push(b"1}\n{\"b\""), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(
            lines.push(b":2}\n\n{\"c\":3}\n{\"d\""),
            vec![b"{\"b\":2}".to_vec(), Vec::new(), b"{\"c\":3}".to_vec()]
        );
        assert_eq!(lines.rest(), Some(b"{\"d\"".to_vec()));
        assert_eq!(lines.rest(), None);
    }
}
