//! Each turn as an OpenTelemetry trace (`otel` feature, `[audit.otel] endpoint`): a root
//! span for the turn and one child per model call, tool call, egress and policy decision,
//! built from the audit rows the turn wrote, so the trace shows exactly what the log
//! holds. Only structured fields are sent — names, models, tokens, bytes, classes,
//! decisions — never content: prompts, answers, tool arguments and results stay on the
//! machine. Sent over OTLP/HTTP with JSON bodies on a thread of its own, so a slow or dead
//! collector costs the turn at most [`FLUSH_WAIT`] and one warning line.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use pai_audit::{EventKind, StoredEvent};
use pai_types::Locality;

use crate::turn::Env;

/// How long a turn waits at most for its trace to be sent.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The attribute names PAI writes, in one place. The GenAI semantic conventions are still
/// at development status upstream; these are the names as of their 1.37 release, pinned
/// here so a rename upstream is a deliberate change.
pub mod attr {
    /// The model's provider, as the session names it (`openai`, `ollama`, …).
    pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
    /// `chat` for a model call, `execute_tool` for a tool call.
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The model asked for.
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    /// Tokens sent.
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Tokens received.
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// The tool a model asked to run.
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    /// The host a request went to.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// Why a span failed.
    pub const ERROR_TYPE: &str = "error.type";
    /// The PAI session.
    pub const PAI_SESSION: &str = "pai.session";
    /// `chat`, `prompt` or `agent`.
    pub const PAI_MODE: &str = "pai.mode";
    /// `local` or `remote`: where the endpoint runs.
    pub const PAI_LOCALITY: &str = "pai.locality";
    /// The data classes a request carried (`public`, `internal`, `personal`, `secret`).
    pub const PAI_CLASSES: &str = "pai.classes";
    /// A policy decision: `allow`, `redact`, `ask`, `deny`.
    pub const PAI_DECISION: &str = "pai.decision";
    /// The rule that decided.
    pub const PAI_RULE: &str = "pai.rule";
    /// Bytes of a request body that left.
    pub const PAI_BYTES_OUT: &str = "pai.egress.bytes";
    /// The HTTP status a request got.
    pub const PAI_STATUS: &str = "pai.egress.status";
    /// Token counts were estimated (the server reported none).
    pub const PAI_TOKENS_ESTIMATED: &str = "pai.usage.estimated";
    /// The audit row a span was built from.
    pub const PAI_AUDIT_ID: &str = "pai.audit.id";
}

/// A turn being traced: where the audit log stood when it began.
pub struct TurnTrace {
    endpoint: String,
    after: i64,
    started: SystemTime,
}

impl TurnTrace {
    /// Starts tracing a turn when `[audit.otel]` is set; `None` otherwise or when the log
    /// cannot be read (the turn itself reports that).
    pub fn start(env: &Env) -> Option<TurnTrace> {
        let endpoint = env.config().audit.otel.as_ref()?.endpoint.clone();
        let log = env.audit().ok()?;
        let after = log.events(1).ok()?.first().map_or(0, |e| e.id.0);
        Some(TurnTrace {
            endpoint,
            after,
            started: SystemTime::now(),
        })
    }

    /// Builds the turn's trace from the rows it wrote in `session` and sends it; a failure
    /// is one warning line, never the turn's error.
    pub fn finish(self, env: &Env, session: &str, mode: pai_types::Mode) {
        let rows = match env.audit().and_then(|log| Ok(log.events(4096)?)) {
            Ok(rows) => rows,
            Err(_) => return,
        };
        let rows: Vec<StoredEvent> = rows
            .into_iter()
            .filter(|r| r.id.0 > self.after && r.event.session == session)
            .collect();
        let url = traces_url(&self.endpoint);
        let (tx, rx) = mpsc::channel();
        let session = session.to_string();
        let mode = mode.to_string();
        let started = self.started;
        let target = url.clone();
        // Its own thread: a collector that does not answer must not hold the turn's
        // runtime or the command.
        std::thread::spawn(move || {
            let _ = tx.send(send(&target, &session, &mode, started, &rows));
        });
        // Credentials in the endpoint's URL are never printed.
        let shown = pai_types::redact_endpoint(&url);
        match rx.recv_timeout(FLUSH_WAIT + Duration::from_millis(500)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "warning: could not send the turn's trace to {shown}: {}",
                e.replace(&url, &shown)
            ),
            Err(_) => eprintln!(
                "warning: could not send the turn's trace to {shown}: no answer within {} s",
                FLUSH_WAIT.as_secs()
            ),
        }
    }
}

/// `<endpoint>/v1/traces`, unless the endpoint already names that path.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

fn send(
    url: &str,
    session: &str,
    mode: &str,
    started: SystemTime,
    rows: &[StoredEvent],
) -> Result<(), String> {
    let resource = Resource::builder_empty().with_service_name("pai").build();
    let collected = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collected.clone())
        .with_resource(resource.clone())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "pai");

    let mut root_attrs = vec![
        KeyValue::new(attr::PAI_SESSION, session.to_string()),
        KeyValue::new(attr::PAI_MODE, mode.to_string()),
    ];
    if let Some(l) = rows.iter().find_map(|r| r.event.locality) {
        root_attrs.push(KeyValue::new(attr::PAI_LOCALITY, locality(l)));
    }
    let root = tracer
        .span_builder(format!("pai {mode}"))
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes(root_attrs)
        .start(&tracer);
    let cx = Context::new().with_span(root);
    for row in rows {
        child(&tracer, &cx, row);
    }
    if rows
        .iter()
        .any(|r| matches!(r.event.kind, EventKind::Error | EventKind::Cancelled))
    {
        cx.span().set_status(Status::error(
            "the turn ended with an error or was cancelled",
        ));
    }
    cx.span().end();
    let batch = collected.take();

    // One request for the whole turn, on a small runtime of this thread's own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // The exporter's reqwest client uses rustls's process-wide provider: ring, as for
    // every other client (no aws-lc C build). One already installed is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .with_timeout(FLUSH_WAIT)
            .build()
            .map_err(|e| e.to_string())?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        match tokio::time::timeout(
            FLUSH_WAIT,
            opentelemetry_sdk::trace::SpanExporter::export(&exporter, batch),
        )
        .await
        {
            Ok(done) => done.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", FLUSH_WAIT.as_secs())),
        }
    })
}

/// Keeps the turn's ended spans, so they go out in one request.
#[derive(Debug, Default, Clone)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl Collect {
    fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl SpanProcessor for Collect {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// One row's span, or none for rows that only carry content (prompts, tool results).
fn child(tracer: &opentelemetry_sdk::trace::SdkTracer, parent: &Context, row: &StoredEvent) {
    let e = &row.event;
    let end = row
        .ts
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .map_or_else(SystemTime::now, |ms| {
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
        });
    let start = end - Duration::from_millis(e.duration_ms.unwrap_or(0));
    let mut attrs = vec![KeyValue::new(attr::PAI_AUDIT_ID, row.id.0)];
    if let Some(l) = e.locality {
        attrs.push(KeyValue::new(attr::PAI_LOCALITY, locality(l)));
    }
    let (name, kind, error) = match e.kind {
        EventKind::Response | EventKind::Summary | EventKind::Error => {
            attrs.extend([
                KeyValue::new(attr::GEN_AI_OPERATION_NAME, "chat"),
                KeyValue::new(attr::GEN_AI_SYSTEM, e.provider.clone()),
                KeyValue::new(attr::GEN_AI_REQUEST_MODEL, e.model.clone()),
            ]);
            if let Some(host) = host_of(&e.endpoint) {
                attrs.push(KeyValue::new(attr::SERVER_ADDRESS, host));
            }
            if let Some(u) = e.usage {
                attrs.extend([
                    KeyValue::new(attr::GEN_AI_USAGE_INPUT_TOKENS, clamp(u.prompt_tokens)),
                    KeyValue::new(attr::GEN_AI_USAGE_OUTPUT_TOKENS, clamp(u.completion_tokens)),
                    KeyValue::new(attr::PAI_TOKENS_ESTIMATED, u.estimated),
                ]);
            }
            let error = (e.kind == EventKind::Error).then_some("model_call_failed");
            (format!("chat {}", e.model), SpanKind::Client, error)
        }
        EventKind::ToolCall => {
            // The content is `name(arguments)`: only the name goes out.
            let tool = safe_word(e.content.split('(').next().unwrap_or_default());
            attrs.extend([
                KeyValue::new(attr::GEN_AI_OPERATION_NAME, "execute_tool"),
                KeyValue::new(attr::GEN_AI_TOOL_NAME, tool.clone()),
            ]);
            (format!("execute_tool {tool}"), SpanKind::Internal, None)
        }
        EventKind::Egress => {
            let json: serde_json::Value =
                serde_json::from_str(&e.content).unwrap_or(serde_json::Value::Null);
            if let Some(host) = json["url"].as_str().and_then(host_of) {
                attrs.push(KeyValue::new(attr::SERVER_ADDRESS, host));
            }
            if let Some(bytes) = json["bytes"].as_u64() {
                attrs.push(KeyValue::new(attr::PAI_BYTES_OUT, clamp(bytes)));
            }
            if let Some(status) = json["status"].as_u64() {
                attrs.push(KeyValue::new(attr::PAI_STATUS, clamp(status)));
            }
            if let Some(classes) = json["classes"].as_array() {
                let classes: Vec<String> = classes
                    .iter()
                    .filter_map(|c| c.as_str().map(safe_word))
                    .collect();
                attrs.push(KeyValue::new(attr::PAI_CLASSES, classes.join(",")));
            }
            ("egress".to_string(), SpanKind::Client, None)
        }
        EventKind::Policy => {
            // The content is `<decision> by <rule>: …`: only those two words go out.
            let mut words = e.content.splitn(3, ' ');
            let decision = safe_word(words.next().unwrap_or_default());
            let rule = match (words.next(), words.next()) {
                (Some("by"), Some(rest)) => safe_word(rest.split(':').next().unwrap_or_default()),
                _ => "unknown".to_string(),
            };
            attrs.extend([
                KeyValue::new(attr::PAI_DECISION, decision.clone()),
                KeyValue::new(attr::PAI_RULE, rule),
            ]);
            (format!("policy {decision}"), SpanKind::Internal, None)
        }
        EventKind::Cancelled => (
            "cancelled".to_string(),
            SpanKind::Internal,
            Some("cancelled"),
        ),
        EventKind::Prompt | EventKind::ToolResult | EventKind::Attempt => return,
    };
    if let Some(error) = error {
        attrs.push(KeyValue::new(attr::ERROR_TYPE, error));
    }
    let mut span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attrs)
        .start_with_context(tracer, parent);
    if error.is_some() {
        span.set_status(Status::error(error.unwrap_or_default()));
    }
    span.end_with_timestamp(end);
}

fn locality(l: Locality) -> &'static str {
    match l {
        Locality::Local => "local",
        Locality::Remote => "remote",
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A name, rule or class as sent: letters, digits and `_-.:` only, so that a row whose
/// text is not what PAI writes cannot smuggle content out.
fn safe_word(s: &str) -> String {
    let s = s.trim();
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        s.to_string()
    } else {
        "unknown".to_string()
    }
}

/// The host (and port) of a URL, without credentials or path.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_string())
}
