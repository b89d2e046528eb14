//! The engine with a mocked provider (mockall) and a recording audit sink: what is sent,
//! what is stored, what is audited, and that nothing leaves unaudited.

use pai_types::DataClass;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream;
use pai_audit::{AuditError, AuditEvent, AuditSink, EventId, EventKind};
use pai_core::{
    Approval, ApprovalRequest, Approver, Budgets, Cancel, ContextManager, ContextSettings,
    CoreError, DEFAULT_MAX_CALLS_PER_ROUND, Engine, Event, HistoryEntry, Limits, SessionStore,
    StopReason, Turn, TurnEnd, UsageLedger,
};
use pai_providers::{
    ChatEvent, ChatRequest, ChatStream, Endpoint, MockProvider, ProviderError, ProviderInfo,
    ProviderKind,
};
use pai_types::{
    Effect, Locality, Message, Mode, Role, Usage, estimate_message_tokens, estimate_tokens,
};
use pretty_assertions::assert_eq;

use super::{MODEL, create, name, temp_store, turn};

const SESSION: &str = "work";
const ENDPOINT: &str = "http://127.0.0.1:9/v1";

/// An audit sink that keeps what it is given and can be told to refuse one kind.
#[derive(Debug, Default)]
struct RecordingAudit {
    events: Mutex<Vec<AuditEvent>>,
    refuse: Option<EventKind>,
    /// The kinds recorded with `record_deferred`, in order.
    deferred: Mutex<Vec<EventKind>>,
    /// The kinds recorded with `record` (synced at once), in order.
    synced: Mutex<Vec<EventKind>>,
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

impl RecordingAudit {
    fn keep(&self, event: &AuditEvent) -> pai_audit::Result<EventId> {
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

impl AuditSink for RecordingAudit {
    fn record(&self, event: &AuditEvent) -> pai_audit::Result<EventId> {
        let id = self.keep(event)?;
        self.synced.lock().unwrap().push(event.kind);
        Ok(id)
    }

    fn record_deferred(&self, event: &AuditEvent) -> pai_audit::Result<EventId> {
        let id = self.keep(event)?;
        self.deferred.lock().unwrap().push(event.kind);
        Ok(id)
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
        // What went over the wire: provenance never does (the gate tests check it).
        let messages = r
            .messages
            .into_iter()
            .map(|m| Message {
                provenance: Message::new(m.role, "").provenance,
                ..m
            })
            .collect();
        Self {
            model: r.model,
            messages,
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
        keep_secrets_in_history: false,
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
        system: None,
        attachments: Vec::new(),
        schema: None,
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
        class: DataClass::Internal,
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
            audit(
                EventKind::Prompt,
                Mode::Prompt,
                MODEL,
                "hello\n[sent: system prompt 3 B internal; your input 5 B internal]"
            ),
            audit(EventKind::Response, Mode::Prompt, MODEL, "Hi there").usage(reported(7, 2)),
        ]
    );
}

#[tokio::test]
async fn only_the_prompt_row_is_synced_on_its_own_the_answer_row_rides_on_the_history_commit() {
    let h = Harness::new();
    let (provider, _seen) = scripted(vec![Ok(reply(&["Hi"], Some((7, 2))))]);
    let engine = h.engine(provider, settings());
    run(&engine, &prompt("hello")).await.0.unwrap();
    // One sync before the request leaves, none for the response row: the history append
    // right after it is the turn's one commit (docs/benchmarks.md, "Syncs per turn").
    assert_eq!(
        h.audit.kinds(),
        vec![EventKind::Prompt, EventKind::Response]
    );
    assert_eq!(*h.audit.deferred.lock().unwrap(), vec![EventKind::Response]);
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
                audit(
                    EventKind::Prompt,
                    Mode::Chat,
                    MODEL,
                    "q2\n[sent: system prompt 3 B internal; history 2 B internal; history 2 B internal; your input 2 B internal]"
                ),
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
        .fold(
            &name(SESSION),
            0,
            ("prompt mode's summary".into(), DataClass::Internal),
            2,
        )
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
                messages: ContextManager::new(folding).fold_request(MODEL, "", &history),
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
    let fold_prompt = "[fold the unfolded turns into the running summary]\n[sent: system prompt 273 B internal; history 133 B internal]";
    assert_eq!(
        h.audit.events(),
        vec![
            audit(EventKind::Prompt, Mode::Prompt, MODEL, fold_prompt),
            audit(EventKind::Summary, Mode::Prompt, MODEL, "SUMMARY").usage(reported(50, 5)),
            audit(
                EventKind::Prompt,
                Mode::Prompt,
                MODEL,
                "next\n[sent: system prompt 3 B internal; session summary 43 B internal; your input 4 B internal]"
            ),
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
    engine
        .record_cancelled(&chat("q"), Cancel::Interrupted, "partial answ")
        .unwrap();
    engine
        .record_cancelled(
            &Turn {
                model: Some("other-model".into()),
                ..prompt("q")
            },
            Cancel::OutputClosed,
            "",
        )
        .unwrap();
    assert_eq!(
        h.audit.events(),
        vec![
            audit(
                EventKind::Cancelled,
                Mode::Chat,
                MODEL,
                "[interrupted] partial answ"
            ),
            audit(
                EventKind::Cancelled,
                Mode::Prompt,
                "other-model",
                "[output closed]"
            ),
        ]
    );
    assert_eq!(h.history(), vec![]);
}

// ---- Limits, budgets, folds in pieces, approvals, cancellation -----------------------

/// A provider answering each call with the next reply (the last repeats), recording each
/// request whole (`max_tokens` and tools included).
fn recording(replies: Vec<Reply>) -> (MockProvider, Arc<Mutex<Vec<ChatRequest>>>) {
    let mut provider = MockProvider::new();
    provider.expect_info().return_const(info());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let replies = Mutex::new(VecDeque::from(replies));
    let log = seen.clone();
    provider.expect_chat().returning(move |request| {
        log.lock().unwrap().push(request);
        let mut replies = replies.lock().unwrap();
        let reply = if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            let last = replies.front().unwrap();
            last.iter()
                .map(|e| Ok(e.as_ref().expect("recording() replies are Ok").clone()))
                .collect()
        };
        Ok(Box::pin(stream::iter(reply)) as ChatStream)
    });
    (provider, seen)
}

fn calls(name: &str, n: usize, tokens: u64) -> Reply {
    let mut events: Reply = (0..n)
        .map(|i| {
            Ok(ChatEvent::ToolCall(pai_types::ToolCall {
                id: format!("call_{i}"),
                name: name.into(),
                arguments: "{}".into(),
            }))
        })
        .collect();
    events.push(Ok(ChatEvent::Usage(reported(tokens, 0))));
    events.push(Ok(ChatEvent::Finished {
        reason: "tool_calls".into(),
    }));
    events
}

/// A tool that counts its calls, with the effects given.
#[derive(Debug)]
struct Counter {
    info: pai_tools::ToolInfo,
    runs: Arc<Mutex<u32>>,
}

#[async_trait::async_trait]
impl pai_tools::Tool for Counter {
    fn info(&self) -> &pai_tools::ToolInfo {
        &self.info
    }
    async fn call(
        &self,
        _args: serde_json::Value,
        _cx: &pai_tools::ToolContext,
    ) -> Result<pai_tools::ToolOutput, pai_tools::ToolError> {
        *self.runs.lock().unwrap() += 1;
        Ok(pai_tools::ToolOutput::text("counted"))
    }
}

fn counter(name: &str, effect: Effect) -> (pai_tools::ToolRegistry, Arc<Mutex<u32>>) {
    let runs = Arc::new(Mutex::new(0));
    let mut registry = pai_tools::ToolRegistry::new();
    registry
        .register(Arc::new(Counter {
            info: pai_tools::ToolInfo {
                spec: pai_types::ToolSpec {
                    name: name.into(),
                    description: "counts".into(),
                    parameters: serde_json::json!({"type": "object"}),
                },
                effects: [effect].into(),
                source: "test".into(),
            },
            runs: runs.clone(),
        }))
        .unwrap();
    (registry, runs)
}

mockall::mock! {
    Asker {}
    #[async_trait::async_trait]
    impl Approver for Asker {
        async fn approve(&self, request: &ApprovalRequest) -> Approval;
    }
}

/// Today's use as another process would change it.
struct SharedLedger(Arc<Mutex<u64>>);

impl UsageLedger for SharedLedger {
    fn used_today(&self) -> pai_core::Result<u64> {
        Ok(*self.0.lock().unwrap())
    }
}

fn session_budget(h: &Harness, cap: u64) {
    h.store
        .update(&name(SESSION), |meta| {
            meta.budget_tokens = Some(cap);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn an_exhausted_budget_sends_nothing_not_even_a_fold() {
    let h = Harness::new();
    // 8 entries of 5 tokens each and 1 reported token per answer: 4 used of a budget of 4.
    for i in 0..4 {
        let [q, mut a] = turn(&format!("q{i}"), &format!("a{i}"));
        a.usage = Some(reported(1, 0));
        h.store.append(&name(SESSION), &[q, a]).unwrap();
    }
    session_budget(&h, 4);
    let engine = h.engine(
        never_called(),
        ContextSettings {
            summary_threshold_tokens: 1,
            ..settings()
        },
    );
    let (result, events) = run(&engine, &prompt("more")).await;
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "nothing was sent: the token budget of session 'work' (4; 4 used) was reached; session budgets never reset: raise it with 'pai work budget <tokens>' or remove it with 'pai work budget none'"
    );
    assert_eq!(events, vec![]);
    assert_eq!(h.audit.kinds(), vec![]);
    assert_eq!(h.store.load_meta(&name(SESSION)).unwrap().folded, 0);
}

#[tokio::test]
async fn a_request_bigger_than_what_is_left_is_refused_and_answers_are_clamped() {
    let h = Harness::new();
    let engine = h.engine(never_called(), settings());
    let turn = Turn {
        limits: Limits {
            budget_tokens: Some(5),
            ..Limits::default()
        },
        ..prompt("a question of a good many words, more than five tokens")
    };
    let err = run(&engine, &turn).await.0.unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::BudgetExhausted(StopReason::RequestOverBudget { left: 5, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("raise --budget-tokens"), "{err}");
    drop(engine);

    // With room, the answer may use only what the request leaves.
    let (provider, seen) = recording(vec![reply(&["ok"], Some((10, 2)))]);
    let engine = h.engine(provider, settings());
    let turn = Turn {
        limits: Limits {
            budget_tokens: Some(100),
            ..Limits::default()
        },
        ..prompt("hi")
    };
    run(&engine, &turn).await.0.unwrap();
    let request = seen.lock().unwrap()[0].clone();
    let input: u64 = request.messages.iter().map(estimate_message_tokens).sum();
    assert_eq!(request.max_tokens, Some((100 - input) as u32));
}

#[tokio::test]
async fn the_daily_cap_is_read_before_every_call() {
    let h = Harness::new();
    let (provider, seen) = recording(vec![reply(&["ok"], Some((1, 1)))]);
    // Other processes use tokens while this engine (a long chat) lives.
    let today = Arc::new(Mutex::new(0));
    let engine = h.engine(provider, settings()).with_budgets(Budgets {
        session: None,
        daily: Some((100, Arc::new(SharedLedger(today.clone())))),
    });
    run(&engine, &chat("one")).await.0.unwrap();
    *today.lock().unwrap() = 60;
    run(&engine, &chat("two")).await.0.unwrap();
    *today.lock().unwrap() = 120;
    let err = run(&engine, &chat("three")).await.0.unwrap_err();
    assert!(
        err.to_string()
            .contains("the daily token cap (100; 120 used today) was reached"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn folding_goes_in_pieces_that_fit_the_window_and_a_bad_fold_never_bricks_the_session() {
    let h = Harness::new();
    let long = "word ".repeat(30); // ~40 tokens a message
    for i in 0..10 {
        h.seed(&[(&format!("q{i} {long}"), &format!("a{i} {long}"))]);
    }
    let window = ContextSettings {
        summary_threshold_tokens: 100,
        context_window: 300,
        ..settings()
    };
    // The fold "model" echoes a summary far bigger than the window, every time.
    let echo = "everything ".repeat(2000);
    let (provider, seen) = recording(vec![reply(&[&echo], Some((1, 1)))]);
    let engine = h.engine(provider, window.clone());
    let (outcome, events) = run(&engine, &prompt("next")).await;
    let outcome = outcome.unwrap();
    assert!(matches!(events[0], Event::Folded { .. }), "{events:?}");
    let requests = seen.lock().unwrap().clone();
    assert!(requests.len() > 2, "folded in several pieces");
    for r in &requests {
        let sent: u64 = r.messages.iter().map(estimate_message_tokens).sum();
        assert!(
            sent <= 300,
            "a request of {sent} tokens in a 300-token window"
        );
    }
    // Fold answers are capped at half the window.
    assert!(
        requests[..requests.len() - 1]
            .iter()
            .all(|r| r.max_tokens == Some(150))
    );
    assert_eq!(outcome.answer, echo);
    // Later prompts work: the oversized summary is cut to fit, not an error.
    run(&engine, &prompt("and again")).await.0.unwrap();
}

#[tokio::test]
async fn a_failed_fold_is_reported_and_the_prompt_still_answers() {
    let h = Harness::new();
    h.seed(&[("q1", "a1"), ("q2", "a2")]);
    let (provider, _) = scripted(vec![
        Err(ProviderError::Connect {
            at: at(),
            detail: "connection refused".into(),
        }),
        Ok(reply(&["answer"], Some((5, 1)))),
    ]);
    let engine = h.engine(
        provider,
        ContextSettings {
            summary_threshold_tokens: 1,
            ..settings()
        },
    );
    let (outcome, events) = run(&engine, &prompt("next")).await;
    assert_eq!(outcome.unwrap().answer, "answer");
    assert!(
        matches!(&events[0], Event::FoldFailed { reason } if reason.contains("connection refused")),
        "{events:?}"
    );
    assert_eq!(h.store.load_meta(&name(SESSION)).unwrap().folded, 0);
}

#[tokio::test]
async fn one_reply_runs_at_most_the_round_cap_of_tool_calls() {
    let h = Harness::new();
    let (tools, runs) = counter("count", Effect::Read);
    let (provider, seen) = recording(vec![calls("count", 300, 1), reply(&["done"], Some((1, 1)))]);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default());
    let turn = Turn {
        limits: Limits {
            max_chain: Some(1),
            ..Limits::default()
        },
        ..prompt("count")
    };
    let (outcome, events) = run(&engine, &turn).await;
    assert_eq!(outcome.unwrap().answer, "done");
    assert_eq!(*runs.lock().unwrap(), DEFAULT_MAX_CALLS_PER_ROUND);
    assert!(
        events.contains(&Event::ToolCallsRefused {
            count: 292,
            reason:
                "at most 8 tool calls run per reply; 292 more were not run (ask for fewer at once)"
                    .into()
        })
    );
    // Every call id got an answer, and the model was asked once more, without tools.
    let second = seen.lock().unwrap()[1].clone();
    let results = second
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .count();
    assert_eq!(results, 300);
    assert!(second.tools.is_empty());
}

#[tokio::test]
async fn a_tool_that_only_reads_rides_on_the_next_sync_one_that_acts_is_synced_before_it_runs() {
    // Reading: its call and result rows are synced by the prompt row of the request that
    // carries the result, before anything it read leaves; two syncs for two model calls.
    let h = Harness::new();
    let (tools, runs) = counter("count", Effect::Read);
    let (provider, _) = recording(vec![calls("count", 1, 1), reply(&["done"], Some((1, 1)))]);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default());
    assert_eq!(
        run(&engine, &prompt("count")).await.0.unwrap().answer,
        "done"
    );
    assert_eq!(*runs.lock().unwrap(), 1);
    assert_eq!(
        h.audit.kinds(),
        vec![
            EventKind::Prompt,
            EventKind::Response,
            EventKind::ToolCall,
            EventKind::ToolResult,
            EventKind::Prompt,
            EventKind::Response,
        ]
    );
    assert_eq!(
        *h.audit.synced.lock().unwrap(),
        vec![EventKind::Prompt, EventKind::Prompt]
    );

    // Acting (here: writing): the call is on record, synced, before the tool runs.
    let h = Harness::new();
    let (tools, runs) = counter("write_it", Effect::Write);
    let (provider, _) = recording(vec![calls("write_it", 1, 1), reply(&["done"], None)]);
    let synced_before_it_ran = Arc::new(Mutex::new(None));
    let mut asker = MockAsker::new();
    let audit = h.audit.clone();
    let seen = synced_before_it_ran.clone();
    asker.expect_approve().times(1).returning(move |_| {
        *seen.lock().unwrap() = Some(audit.synced.lock().unwrap().clone());
        Approval::Yes
    });
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default())
        .with_approver(Arc::new(asker));
    let turn = Turn {
        mode: Mode::Agent,
        ..prompt("go")
    };
    assert_eq!(run(&engine, &turn).await.0.unwrap().answer, "done");
    assert_eq!(*runs.lock().unwrap(), 1);
    assert_eq!(
        synced_before_it_ran.lock().unwrap().clone(),
        Some(vec![EventKind::Prompt, EventKind::ToolCall])
    );
    assert_eq!(
        *h.audit.synced.lock().unwrap(),
        vec![EventKind::Prompt, EventKind::ToolCall, EventKind::Prompt]
    );
}

#[tokio::test]
async fn a_run_budget_is_checked_before_tool_results_go_back() {
    let h = Harness::new();
    let (tools, runs) = counter("count", Effect::Read);
    let (provider, seen) = recording(vec![calls("count", 1, 490)]);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default());
    let turn = Turn {
        mode: Mode::Agent,
        limits: Limits {
            budget_tokens: Some(500),
            ..Limits::default()
        },
        ..prompt("go")
    };
    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "the results were never sent");
    assert_eq!(*runs.lock().unwrap(), 1);
    assert!(
        matches!(outcome.stopped, Some(StopReason::RequestOverBudget { .. })),
        "{:?}",
        outcome.stopped
    );
}

#[tokio::test]
async fn agent_steps_approvals_and_always() {
    let h = Harness::new();
    let (tools, runs) = counter("write_it", Effect::Write);
    let (provider, _) = recording(vec![calls("write_it", 2, 1)]);
    let mut asker = MockAsker::new();
    // "Always" on the first question: the second call runs without asking.
    asker.expect_approve().times(1).returning(|r| {
        assert_eq!(r.tool, "write_it");
        Approval::Always
    });
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default())
        .with_approver(Arc::new(asker));
    let turn = Turn {
        mode: Mode::Agent,
        limits: Limits {
            max_steps: Some(2),
            ..Limits::default()
        },
        ..prompt("go")
    };
    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(*runs.lock().unwrap(), 4, "two calls in each of two steps");
    assert_eq!(outcome.stopped, Some(StopReason::StepLimit { steps: 2 }));
}

#[tokio::test]
async fn a_refused_approval_goes_back_to_the_model() {
    let h = Harness::new();
    let (tools, runs) = counter("write_it", Effect::Write);
    let (provider, seen) = recording(vec![calls("write_it", 1, 1), reply(&["ok"], None)]);
    let mut asker = MockAsker::new();
    asker.expect_approve().times(1).return_const(Approval::No);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default())
        .with_approver(Arc::new(asker));
    let turn = Turn {
        mode: Mode::Agent,
        ..prompt("go")
    };
    let (outcome, events) = run(&engine, &turn).await;
    assert_eq!(outcome.unwrap().stopped, None);
    assert_eq!(*runs.lock().unwrap(), 0);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ToolResult { outcome: pai_core::ToolOutcome::Refused(why), .. }
            if why.contains("did not approve")
    )));
    let back = seen.lock().unwrap()[1].messages.last().unwrap().clone();
    assert!(
        back.content
            .starts_with("refused: the user did not approve"),
        "{back:?}"
    );
}

#[tokio::test]
async fn an_audit_failure_after_the_request_left_says_it_was_sent() {
    let h = Harness::with_audit(RecordingAudit::refusing(EventKind::Response));
    let (provider, _) = scripted(vec![Ok(reply(&["hi"], Some((1, 1))))]);
    let engine = h.engine(provider, settings());
    let err = run(&engine, &prompt("hello")).await.0.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "the request was sent and answered, but the audit log could not record it"
        ),
        "{text}"
    );
    assert!(!text.contains("nothing was sent"), "{text}");
    assert_eq!(h.history(), vec![]);
}

#[tokio::test]
async fn a_cancelled_run_records_why_and_what_had_arrived() {
    let h = Harness::new();
    let mut provider = MockProvider::new();
    provider.expect_info().return_const(info());
    provider.expect_chat().times(1).returning(|_| {
        let head = stream::iter(vec![Ok(ChatEvent::Delta("half an ans".into()))]);
        Ok(Box::pin(head.chain(stream::pending())) as ChatStream)
    });
    let engine = h.engine(provider, settings());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let end = engine
        .run_until(
            &prompt("q"),
            &mut |e| {
                if matches!(e, Event::Delta(_)) {
                    tx.take().map(|tx| tx.send(()));
                }
            },
            async {
                let _ = rx.await;
                Cancel::OutputClosed
            },
        )
        .await
        .unwrap();
    assert_eq!(
        end,
        TurnEnd::Cancelled {
            reason: Cancel::OutputClosed,
            partial: "half an ans".into()
        }
    );
    assert_eq!(
        h.audit.kinds(),
        vec![EventKind::Prompt, EventKind::Cancelled]
    );
    assert_eq!(h.audit.events()[1].content, "[output closed] half an ans");
    assert_eq!(h.history(), vec![]);
}

#[tokio::test]
async fn a_rate_limited_call_tells_the_caller_before_it_waits() {
    use wiremock::{Mock, ResponseTemplate};
    let mock = pai_test_support::MockOpenAi::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&mock.server)
        .await;
    mock.reply_json("after the wait", 1, 1).await;
    let provider = pai_providers::connect(pai_providers::ProviderConfig {
        name: "limited".into(),
        kind: ProviderKind::OpenAiCompatible,
        base_url: mock.base_url(),
        locality: Locality::Local,
        api_key: None,
        key_hint: String::new(),
        headers: Vec::new(),
        net: pai_providers::NetSettings::default(),
    })
    .unwrap();
    let h = Harness::new();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let seen = waits.clone();
    let engine = Engine::new(
        Arc::from(provider),
        h.audit.clone(),
        h.store.clone(),
        ContextManager::new(settings()),
    )
    .with_wait_notifier(Arc::new(move |w: &pai_providers::RetryWait| {
        seen.lock()
            .unwrap()
            .push((w.endpoint.to_string(), w.rate_limited, w.attempt));
    }));
    let turn = Turn {
        stream: false,
        ..prompt("hi")
    };
    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(outcome.answer, "after the wait");
    assert_eq!(
        *waits.lock().unwrap(),
        vec![(format!("limited at {}", mock.base_url()), true, 1)]
    );
}

#[tokio::test]
async fn prompt_mode_stops_offering_tools_after_its_chain_and_a_run_budget_stops_midway() {
    // The chain: two rounds, then one more call without tools; not a "stop".
    let h = Harness::new();
    let (tools, runs) = counter("count", Effect::Read);
    let (provider, seen) = recording(vec![calls("count", 1, 1)]);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default());
    let turn = Turn {
        limits: Limits {
            max_chain: Some(2),
            ..Limits::default()
        },
        ..prompt("go")
    };
    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(outcome.stopped, None);
    assert_eq!(*runs.lock().unwrap(), 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(!seen[1].tools.is_empty() && seen[2].tools.is_empty());

    // A reply that uses the whole run budget stops the loop with Budget, results unsent.
    let h = Harness::new();
    let (tools, _) = counter("count", Effect::Read);
    let (provider, seen) = recording(vec![calls("count", 1, 100)]);
    let engine = h
        .engine(provider, settings())
        .with_tools(tools, pai_tools::ToolContext::default());
    let turn = Turn {
        mode: Mode::Agent,
        limits: Limits {
            budget_tokens: Some(100),
            ..Limits::default()
        },
        ..prompt("x")
    };
    let outcome = run(&engine, &turn).await.0.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        outcome.stopped,
        Some(StopReason::Budget {
            budget: pai_core::Budget::Run,
            cap: 100,
            used: 100
        })
    );
    assert_eq!(
        outcome.stopped.unwrap().to_string(),
        "the token budget for this run (100; 100 used) was reached"
    );
}
