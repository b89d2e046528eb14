//! The engine with a mocked provider (mockall) and a recording audit sink: what is sent,
//! what is stored, what is audited, and that nothing leaves unaudited.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::stream;
use pai_audit::{AuditError, AuditEvent, AuditSink, EventId, EventKind};
use pai_core::{
    ContextManager, ContextSettings, CoreError, Engine, Event, HistoryEntry, Limits, SessionStore,
    Turn,
};
use pai_providers::{
    ChatEvent, ChatRequest, ChatStream, Endpoint, MockProvider, ProviderError, ProviderInfo,
    ProviderKind,
};
use pai_types::{Locality, Message, Mode, Role, Usage, estimate_message_tokens, estimate_tokens};
use pretty_assertions::assert_eq;

use super::{MODEL, create, name, temp_store, turn};

const SESSION: &str = "work";
const ENDPOINT: &str = "http://127.0.0.1:9/v1";

/// An audit sink that keeps what it is given and can be told to refuse one kind.
#[derive(Debug, Default)]
struct RecordingAudit {
    events: Mutex<Vec<AuditEvent>>,
    refuse: Option<EventKind>,
}

impl RecordingAudit {
    fn refusing(kind: EventKind) -> Self {
        Self {
            refuse: Some(kind),
            ..Self::default()
        }
    }

    /// The recorded events with their durations checked and cleared, so whole structs compare.
    fn events(&self) -> Vec<AuditEvent> {
        let mut events = self.events.lock().unwrap().clone();
        for e in &mut events {
            let timed = matches!(
                e.kind,
                EventKind::Response | EventKind::Summary | EventKind::Error
            );
            assert_eq!(e.duration_ms.is_some(), timed, "duration of {:?}", e.kind);
            e.duration_ms = None;
        }
        events
    }

    fn kinds(&self) -> Vec<EventKind> {
        self.events.lock().unwrap().iter().map(|e| e.kind).collect()
    }
}

impl AuditSink for RecordingAudit {
    fn record(&self, event: &AuditEvent) -> pai_audit::Result<EventId> {
        if self.refuse == Some(event.kind) {
            return Err(AuditError::Busy {
                path: "audit.db".into(),
            });
        }
        let mut events = self.events.lock().unwrap();
        events.push(event.clone());
        Ok(EventId(events.len() as i64))
    }
}

fn info() -> ProviderInfo {
    ProviderInfo {
        name: "mock".into(),
        kind: ProviderKind::OpenAiCompatible,
        endpoint: ENDPOINT.into(),
        locality: Locality::Local,
    }
}

fn at() -> Endpoint {
    Endpoint {
        provider: "mock".into(),
        url: ENDPOINT.into(),
    }
}

type Reply = Vec<pai_providers::Result<ChatEvent>>;

/// A full answer: the pieces as deltas, then usage (if any), then `Finished`.
fn reply(pieces: &[&str], usage: Option<(u64, u64)>) -> Reply {
    let mut events: Reply = pieces
        .iter()
        .map(|p| Ok(ChatEvent::Delta((*p).into())))
        .collect();
    if let Some((prompt_tokens, completion_tokens)) = usage {
        events.push(Ok(ChatEvent::Usage(Usage {
            prompt_tokens,
            completion_tokens,
            estimated: false,
        })));
    }
    events.push(Ok(ChatEvent::Finished {
        reason: "stop".into(),
    }));
    events
}

fn reported(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        estimated: false,
    }
}

/// What a request asked for: `ChatRequest` minus its per-call plumbing, for whole-struct
/// comparison. The engine offers no tools, so every request must have none.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    model: String,
    messages: Vec<Message>,
    stream: bool,
}

impl From<ChatRequest> for Sent {
    fn from(r: ChatRequest) -> Self {
        assert_eq!(r.tools, vec![], "the engine offers no tools");
        Self {
            model: r.model,
            messages: r.messages,
            stream: r.stream,
        }
    }
}

/// The requests a scripted provider received.
type Seen = Arc<Mutex<Vec<Sent>>>;

/// A provider that must be called exactly once per reply, answering with them in turn.
fn scripted(replies: Vec<pai_providers::Result<Reply>>) -> (MockProvider, Seen) {
    let mut provider = MockProvider::new();
    provider.expect_info().return_const(info());
    let seen = Seen::default();
    let calls = replies.len();
    let replies = Mutex::new(VecDeque::from(replies));
    let log = seen.clone();
    provider
        .expect_chat()
        .times(calls)
        .returning(move |request| {
            log.lock().unwrap().push(request.into());
            let reply = replies.lock().unwrap().pop_front().unwrap()?;
            Ok(Box::pin(stream::iter(reply)) as ChatStream)
        });
    (provider, seen)
}

/// A provider that must never be asked anything.
fn never_called() -> MockProvider {
    let mut provider = MockProvider::new();
    provider.expect_info().return_const(info());
    provider.expect_chat().times(0);
    provider.expect_models().times(0);
    provider
}

fn settings() -> ContextSettings {
    ContextSettings {
        system_prompt: "sys".into(),
        summary_threshold_tokens: 10_000,
        reserve_output_tokens: 0,
        context_window: 0,
    }
}

struct Harness {
    _home: pai_test_support::TempHome,
    store: SessionStore,
    audit: Arc<RecordingAudit>,
}

impl Harness {
    fn new() -> Self {
        Self::with_audit(RecordingAudit::default())
    }

    fn with_audit(audit: RecordingAudit) -> Self {
        let (home, store) = temp_store();
        create(&store, SESSION);
        Self {
            _home: home,
            store,
            audit: Arc::new(audit),
        }
    }

    fn engine(&self, provider: MockProvider, settings: ContextSettings) -> Engine {
        Engine::new(
            Arc::new(provider),
            self.audit.clone(),
            self.store.clone(),
            ContextManager::new(settings),
        )
    }

    fn seed(&self, turns: &[(&str, &str)]) {
        for (q, a) in turns {
            self.store.append(&name(SESSION), &turn(q, a)).unwrap();
        }
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.store.snapshot(&name(SESSION)).unwrap().history
    }
}

fn prompt(input: &str) -> Turn {
    Turn {
        session: name(SESSION),
        mode: Mode::Prompt,
        input: input.into(),
        stream: true,
        model: None,
        limits: Limits::default(),
    }
}

fn chat(input: &str) -> Turn {
    Turn {
        mode: Mode::Chat,
        ..prompt(input)
    }
}

/// Runs `turn` and returns its result with the events it reported.
async fn run(
    engine: &Engine,
    turn: &Turn,
) -> (pai_core::Result<pai_core::TurnOutcome>, Vec<Event>) {
    let mut events = Vec::new();
    let result = engine.run(turn, &mut |e| events.push(e)).await;
    (result, events)
}

/// An audit event as the engine should build it for this test's provider.
fn audit(kind: EventKind, mode: Mode, model: &str, content: &str) -> AuditEvent {
    AuditEvent::new(kind, content)
        .session(SESSION)
        .mode(mode)
        .provider("mock")
        .endpoint(ENDPOINT)
        .model(model)
        .locality(Locality::Local)
}

/// History entries without their timestamps, for whole-struct comparison.
fn untimed(entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    entries
        .into_iter()
        .map(|e| HistoryEntry {
            at: String::new(),
            ..e
        })
        .collect()
}

fn stored(role: Role, content: &str, model: Option<&str>, usage: Option<Usage>) -> HistoryEntry {
    HistoryEntry {
        role,
        content: content.into(),
        at: String::new(),
        model: model.map(str::to_string),
        usage,
    }
}

#[tokio::test]
async fn a_prompt_turn_is_sent_stored_and_audited() {
    let h = Harness::new();
    let (provider, seen) = scripted(vec![Ok(reply(&["Hi", " there"], Some((7, 2))))]);
    let engine = h.engine(provider, settings());

    let (outcome, events) = run(&engine, &prompt("hello")).await;
    let outcome = outcome.unwrap();
    assert_eq!(
        (
            outcome.answer.as_str(),
            outcome.usage,
            outcome.model.as_str()
        ),
        ("Hi there", reported(7, 2), MODEL)
    );
    assert_eq!(
        events,
        vec![Event::Delta("Hi".into()), Event::Delta(" there".into())]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Sent {
            model: MODEL.into(),
            messages: vec![Message::system("sys"), Message::user("hello")],
            stream: true,
        }]
    );
    assert_eq!(
        untimed(h.history()),
        vec![
            stored(Role::User, "hello", None, None),
            stored(
                Role::Assistant,
                "Hi there",
                Some(MODEL),
                Some(reported(7, 2))
            ),
        ]
    );
    assert_eq!(
        h.audit.events(),
        vec![
            audit(EventKind::Prompt, Mode::Prompt, MODEL, "hello"),
            audit(EventKind::Response, Mode::Prompt, MODEL, "Hi there").usage(reported(7, 2)),
        ]
    );
}

#[tokio::test]
async fn nothing_is_sent_when_the_audit_log_refuses_the_prompt() {
    for turn in [prompt("secret question"), chat("secret question")] {
        let h = Harness::with_audit(RecordingAudit::refusing(EventKind::Prompt));
        h.seed(&[("q1", "a1")]);
        let before = h.store.snapshot(&name(SESSION)).unwrap();
        // A fold would be a model call too: the threshold is low enough to want one.
        let engine = h.engine(
            never_called(),
            ContextSettings {
                summary_threshold_tokens: 1,
                ..settings()
            },
        );

        let (result, events) = run(&engine, &turn).await;
        let err = result.unwrap_err();
        assert!(matches!(err, CoreError::Audit(_)), "{err:?}");
        assert!(err.to_string().contains("nothing was sent"), "{err}");
        assert_eq!(events, vec![]);
        assert_eq!(h.store.snapshot(&name(SESSION)).unwrap(), before);
        assert_eq!(h.audit.kinds(), vec![]);
        drop(engine); // verifies chat().times(0)
    }
}

#[tokio::test]
async fn a_failed_call_leaves_history_alone_and_is_audited_as_an_error() {
    let cut = || ProviderError::StreamCut {
        at: at(),
        detail: "connection reset".into(),
    };
    let cases: Vec<(&str, pai_providers::Result<Reply>, Vec<Event>)> = vec![
        (
            "refused outright",
            Err(ProviderError::Connect {
                at: at(),
                detail: "connection refused".into(),
            }),
            vec![],
        ),
        (
            "cut off mid-stream",
            Ok(vec![
                Ok(ChatEvent::Delta("par".into())),
                Ok(ChatEvent::Delta("tial".into())),
                Err(cut()),
            ]),
            vec![Event::Delta("par".into()), Event::Delta("tial".into())],
        ),
        (
            "ended without Finished",
            Ok(vec![
                Ok(ChatEvent::Delta("par".into())),
                Ok(ChatEvent::Usage(reported(3, 1))),
            ]),
            vec![Event::Delta("par".into())],
        ),
    ];
    for (case, outcome, expected_events) in cases {
        let h = Harness::new();
        h.seed(&[("q1", "a1")]);
        let before = h.store.snapshot(&name(SESSION)).unwrap();
        let (provider, _) = scripted(vec![outcome]);
        let engine = h.engine(provider, settings());

        let (result, events) = run(&engine, &chat("q2")).await;
        let err = result.unwrap_err();
        assert!(matches!(err, CoreError::Provider(_)), "{case}: {err:?}");
        assert_eq!(events, expected_events, "{case}");
        assert_eq!(h.store.snapshot(&name(SESSION)).unwrap(), before, "{case}");
        assert_eq!(
            h.audit.events(),
            vec![
                audit(EventKind::Prompt, Mode::Chat, MODEL, "q2"),
                audit(EventKind::Error, Mode::Chat, MODEL, &err.to_string()),
            ],
            "{case}"
        );
    }
}

#[tokio::test]
async fn usage_is_estimated_when_the_provider_reports_none() {
    let h = Harness::new();
    let (provider, seen) = scripted(vec![Ok(reply(&["four score and"], None))]);
    let engine = h.engine(provider, settings());

    let outcome = run(&engine, &prompt("how many?")).await.0.unwrap();
    let sent: u64 = seen.lock().unwrap()[0]
        .messages
        .iter()
        .map(estimate_message_tokens)
        .sum();
    let estimated = Usage {
        prompt_tokens: sent,
        completion_tokens: estimate_tokens("four score and"),
        estimated: true,
    };
    assert!(estimated.prompt_tokens > 0 && estimated.completion_tokens > 0);
    assert_eq!(outcome.usage, estimated);
    assert_eq!(h.history()[1].usage, Some(estimated));
    assert_eq!(h.audit.events()[1].usage, Some(estimated));
}

#[tokio::test]
async fn chat_sends_the_whole_history_and_no_summary() {
    let h = Harness::new();
    h.seed(&[("q1", "a1"), ("q2", "a2")]);
    h.store
        .fold(&name(SESSION), 0, "prompt mode's summary".into(), 2)
        .unwrap();
    let (provider, seen) = scripted(vec![Ok(reply(&["a3"], Some((1, 1))))]);
    let engine = h.engine(provider, settings());

    run(&engine, &chat("q3")).await.0.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].messages,
        vec![
            Message::system("sys"),
            Message::user("q1"),
            Message::assistant("a1"),
            Message::user("q2"),
            Message::assistant("a2"),
            Message::user("q3"),
        ]
    );
}

#[tokio::test]
async fn chat_trims_the_oldest_turns_to_the_window_and_keeps_the_system_prompt() {
    let h = Harness::new();
    let long = "word ".repeat(40); // about 54 tokens a message
    h.seed(&[
        (&long, &long),
        ("recent question", "recent answer"), // 8 tokens each
    ]);
    // 40 tokens: "sys" and "now" take 10, the recent turn 16, the long one cannot fit.
    let window = ContextSettings {
        context_window: 40,
        ..settings()
    };
    let (provider, seen) = scripted(vec![Ok(reply(&["ok"], Some((1, 1))))]);
    let engine = h.engine(provider, window);

    run(&engine, &chat("now")).await.0.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].messages,
        vec![
            Message::system("sys"),
            Message::user("recent question"),
            Message::assistant("recent answer"),
            Message::user("now"),
        ]
    );
    // Trimming shapes the request only: nothing is dropped from the session.
    assert_eq!(h.history().len(), 6);
}

#[tokio::test]
async fn prompt_mode_folds_once_past_the_threshold_and_then_sends_the_summary() {
    let h = Harness::new();
    let seeded = [("q1", "a1"), ("q2", "a2"), ("q3", "a3"), ("q4", "a4")];
    h.seed(&seeded); // 8 entries of 5 tokens: 40 > 30
    let folding = ContextSettings {
        summary_threshold_tokens: 30,
        ..settings()
    };
    let (provider, seen) = scripted(vec![
        Ok(reply(&["SUMMARY"], Some((50, 5)))), // the fold
        Ok(reply(&["answer"], Some((20, 3)))),  // the first prompt
        Ok(reply(&["again!"], Some((25, 4)))),  // the second prompt, with no fold
    ]);
    let engine = h.engine(provider, folding.clone());
    let history = h.history();

    let (outcome, events) = run(&engine, &prompt("next")).await;
    assert_eq!(outcome.unwrap().answer, "answer");
    assert_eq!(
        events,
        vec![
            Event::Folded {
                usage: reported(50, 5)
            },
            Event::Delta("answer".into())
        ]
    );
    let summary = Message::system("Summary of the conversation so far:\nSUMMARY");
    assert_eq!(
        seen.lock().unwrap()[..],
        [
            Sent {
                model: MODEL.into(),
                messages: ContextManager::new(folding).fold_request("", &history),
                stream: false,
            },
            Sent {
                model: MODEL.into(),
                messages: vec![
                    Message::system("sys"),
                    summary.clone(),
                    Message::user("next")
                ],
                stream: true,
            },
        ]
    );
    let meta = h.store.load_meta(&name(SESSION)).unwrap();
    assert_eq!((meta.summary.as_str(), meta.folded), ("SUMMARY", 8));
    assert_eq!(h.history().len(), 10);
    let fold_prompt = "[fold the unfolded turns into the running summary]";
    assert_eq!(
        h.audit.events(),
        vec![
            audit(EventKind::Prompt, Mode::Prompt, MODEL, fold_prompt),
            audit(EventKind::Summary, Mode::Prompt, MODEL, "SUMMARY").usage(reported(50, 5)),
            audit(EventKind::Prompt, Mode::Prompt, MODEL, "next"),
            audit(EventKind::Response, Mode::Prompt, MODEL, "answer").usage(reported(20, 3)),
        ]
    );

    // One turn since the fold is under the threshold: no second fold.
    let (outcome, events) = run(&engine, &prompt("more")).await;
    assert_eq!(outcome.unwrap().answer, "again!");
    assert_eq!(events, vec![Event::Delta("again!".into())]);
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(
        seen.lock().unwrap()[2].messages,
        vec![
            Message::system("sys"),
            summary,
            Message::user("next"),
            Message::assistant("answer"),
            Message::user("more"),
        ]
    );
    let meta = h.store.load_meta(&name(SESSION)).unwrap();
    assert_eq!((meta.summary.as_str(), meta.folded), ("SUMMARY", 8));
    assert_eq!(
        h.audit.kinds()[4..],
        [EventKind::Prompt, EventKind::Response]
    );
}

#[tokio::test]
async fn a_model_override_is_used_for_the_turn_only() {
    let h = Harness::new();
    let (provider, seen) = scripted(vec![Ok(reply(&["hi"], Some((2, 1))))]);
    let engine = h.engine(provider, settings());
    let turn = Turn {
        model: Some("other-model".into()),
        ..prompt("hello")
    };

    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(outcome.model, "other-model");
    assert_eq!(seen.lock().unwrap()[0].model, "other-model");
    assert_eq!(h.history()[1].model.as_deref(), Some("other-model"));
    assert!(h.audit.events().iter().all(|e| e.model == "other-model"));
    assert_eq!(h.store.load_meta(&name(SESSION)).unwrap().model, MODEL);
}

#[tokio::test]
async fn a_cancelled_turn_is_recorded_with_the_model_it_ran_with() {
    let h = Harness::new();
    let engine = h.engine(never_called(), settings());
    engine.record_cancelled(&chat("q"), "partial answ").unwrap();
    engine
        .record_cancelled(
            &Turn {
                model: Some("other-model".into()),
                ..prompt("q")
            },
            "",
        )
        .unwrap();
    assert_eq!(
        h.audit.events(),
        vec![
            audit(EventKind::Cancelled, Mode::Chat, MODEL, "partial answ"),
            audit(EventKind::Cancelled, Mode::Prompt, "other-model", ""),
        ]
    );
    assert_eq!(h.history(), vec![]);
}
