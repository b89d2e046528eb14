//! `pai audit …`: read, search, check and export the audit log.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pai_audit::{EventId, EventKind, Filter, PurgeScope, SqliteAudit};
use pai_types::Locality;

use crate::output::neutralise;
use crate::turn::Env;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first.
    List(ListArgs),
    /// Show one event in full: every field, its chain fields and, for a prompt, the
    /// requests that carried it (bytes, SHA-256 of the body).
    Show(ShowArgs),
    /// Full-text search over the events' content (FTS5: words, "phrases", prefix*).
    Search(SearchArgs),
    /// Where requests went: per endpoint and locality, requests, bytes, tokens, classes,
    /// redactions, refusals.
    Egress(EgressArgs),
    /// Check every row's hash and MAC and the head checkpoint; exit 1 at the first
    /// problem, naming the row and why.
    Verify(VerifyArgs),
    /// Write every row as JSON Lines, with what is needed to re-verify the chain outside
    /// PAI (docs/audit.md).
    Export(ExportArgs),
    /// Remove events' content, keeping each row's hash and MAC as a tombstone (verify
    /// still passes and reports the purged rows).
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// From this time (same forms as `list --since`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PurgeArgs {
    /// Events before this time (same forms as `list --since`).
    #[arg(long, value_name = "WHEN")]
    pub before: Option<String>,
    /// Every event of this session.
    #[arg(long)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this session.
    #[arg(long, short)]
    pub session: Option<String>,
    /// From this time: a date (2026-11-30), an RFC 3339 time, or ago (30m, 2h, 7d, 2w).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this kind (repeatable): prompt, response, summary, error, cancelled, attempt,
    /// tool_call, tool_result, egress, policy.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
    /// Only this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only local or remote.
    #[arg(long, value_name = "local|remote")]
    pub locality: Option<String>,
    /// Only this mode: chat, prompt or agent.
    #[arg(long)]
    pub mode: Option<String>,
    /// At most N events.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON array.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    pub jsonl: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for.
    pub text: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event's id (the first column of `pai audit list`).
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EgressArgs {
    /// From this time (same forms as `list --since`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    match args.command {
        AuditCommand::List(a) => list(&env, &a.filter, None),
        AuditCommand::Search(a) => list(&env, &a.filter, Some(&a.text)),
        AuditCommand::Show(a) => show(&env, a),
        AuditCommand::Egress(a) => egress(&env, a),
        AuditCommand::Verify(a) => verify(&env, a),
        AuditCommand::Export(a) => export(&env, a),
        AuditCommand::Purge(a) => purge(&env, a),
    }
}

fn export(env: &Env, args: ExportArgs) -> Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|w| parse_when("since", w))
        .transpose()?;
    let log = open(env)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match log.export(since.as_deref(), &mut out) {
        Ok(n) => {
            drop(out);
            eprintln!("exported {n} events");
            Ok(ExitCode::SUCCESS)
        }
        // A reader that went away (`| head`) ends the export quietly.
        Err(pai_audit::AuditError::Export { error, .. })
            if error.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn purge(env: &Env, args: PurgeArgs) -> Result<ExitCode> {
    let scope = match (&args.before, &args.session) {
        (Some(before), _) => PurgeScope::Before(parse_when("before", before)?),
        (None, Some(session)) => PurgeScope::Session(session.clone()),
        (None, None) => bail!("say what to purge: --before <WHEN> or --session <NAME>"),
    };
    let log = open(env)?;
    report_purge(&log.purge(&scope)?);
    Ok(ExitCode::SUCCESS)
}

/// `reset --purge-audit` / `init --force --purge-audit`: the session's audit content.
pub fn purge_session(env: &Env, session: &pai_types::SessionName) -> Result<()> {
    if !env.paths().audit_db().exists() {
        return Ok(());
    }
    let log = env.audit()?;
    report_purge(&log.purge(&PurgeScope::Session(session.to_string()))?);
    Ok(())
}

fn report_purge(report: &pai_audit::PurgeReport) {
    match report.range {
        None => outln!("no audit content to purge"),
        Some((a, b)) => outln!(
            "purged the content of {} audit event(s) (rows {a}-{b}); their hashes and MACs stay, so 'pai audit verify' still passes",
            report.rows
        ),
    }
}

/// The log, opened with its key; a checkpoint that disagrees is one warning line.
fn open(env: &Env) -> Result<std::sync::Arc<SqliteAudit>> {
    let path = env.paths().audit_db();
    missing(&path)?;
    let log = env.audit()?;
    if let Some(warning) = log.head_warning() {
        eprintln!("warning: {warning}");
    }
    Ok(log)
}

/// Fails when there is no log at `path`, saying whether its checkpoint shows one existed.
fn missing(path: &std::path::Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if path.with_extension("head").exists() {
        bail!(
            "there is no audit log at {}, but its checkpoint (audit.head) shows one was kept: it was deleted or moved; keep audit.head as evidence",
            path.display()
        );
    }
    bail!(
        "there is no audit log at {}: nothing was recorded yet, or it was deleted; nothing proves which",
        path.display()
    );
}

const WHEN_FORMS: &str =
    "a date (2026-11-30), an RFC 3339 time (2026-11-30T14:00:00Z), or a time ago (30m, 2h, 7d, 2w)";

/// `when` as a bound comparable with the log's timestamps.
fn parse_when(flag: &str, when: &str) -> Result<String> {
    let when = when.trim();
    let ago = when
        .strip_suffix(['m', 'h', 'd', 'w'])
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0);
    if let (Some(n), Some(unit)) = (ago, when.chars().last()) {
        let minutes = match unit {
            'm' => n,
            'h' => n * 60,
            'd' => n * 60 * 24,
            _ => n * 60 * 24 * 7,
        };
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
        return Ok(format!("{at:.3}"));
    }
    if let Ok(ts) = when.parse::<jiff::Timestamp>() {
        return Ok(format!("{ts:.3}"));
    }
    if let Ok(date) = when.parse::<jiff::civil::Date>() {
        return Ok(date.to_string());
    }
    bail!("--{flag} '{when}' is not a time PAI understands; give {WHEN_FORMS}")
}

fn filter_of(args: &FilterArgs) -> Result<Filter> {
    let kinds = args
        .kind
        .iter()
        .flat_map(|k| k.split(','))
        .map(|k| {
            EventKind::from_name(k.trim()).with_context(|| {
                let valid: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind '{k}'; valid kinds: {}", valid.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let locality = match args.locality.as_deref() {
        None => None,
        Some("local") => Some(Locality::Local),
        Some("remote") => Some(Locality::Remote),
        Some(other) => bail!("unknown locality '{other}'; valid: local, remote"),
    };
    if let Some(mode) = &args.mode
        && !["chat", "prompt", "agent"].contains(&mode.as_str())
    {
        bail!("unknown mode '{mode}'; valid modes: chat, prompt, agent");
    }
    Ok(Filter {
        session: args.session.clone(),
        since: args
            .since
            .as_deref()
            .map(|w| parse_when("since", w))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|w| parse_when("until", w))
            .transpose()?,
        kinds,
        provider: args.provider.clone(),
        locality,
        mode: args.mode.clone(),
        limit: Some(args.limit),
    })
}

fn list(env: &Env, args: &FilterArgs, text: Option<&str>) -> Result<ExitCode> {
    let filter = filter_of(args)?;
    let log = open(env)?;
    let events = match text {
        Some(text) => log.search(&fts_query(text), &filter)?,
        None => log.list(&filter)?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&events)?);
    } else if args.jsonl {
        for e in &events {
            outln!("{}", serde_json::to_string(e)?);
        }
    } else if events.is_empty() {
        outln!("no events match");
    } else {
        outln!(
            "{:>6}  {:<24}  {:<12}  {:<11}  {:<10}  {:<6}  CONTENT",
            "ID",
            "TIME",
            "SESSION",
            "KIND",
            "PROVIDER",
            "WHERE"
        );
        for e in &events {
            outln!(
                "{:>6}  {:<24}  {:<12}  {:<11}  {:<10}  {:<6}  {}",
                e.id,
                e.ts,
                clip(&e.event.session, 12),
                e.event.kind.as_str(),
                clip(&e.event.provider, 10),
                e.event.locality.map_or("-".to_string(), |l| l.to_string()),
                clip(&first_line(&e.event.content), 60)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Words as typed are searched as words: each is quoted, so `-`, `:` or `.` inside them
/// is not FTS5 syntax. A query that already uses quotes, `*` or AND/OR/NOT is passed on.
fn fts_query(text: &str) -> String {
    let advanced = text.contains('"')
        || text.contains('*')
        || text
            .split_whitespace()
            .any(|w| ["AND", "OR", "NOT", "NEAR"].contains(&w));
    if advanced {
        return text.to_string();
    }
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn first_line(text: &str) -> String {
    neutralise(text.lines().next().unwrap_or("")).into_owned()
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn show(env: &Env, args: ShowArgs) -> Result<ExitCode> {
    let id: i64 = args
        .id
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| {
            format!(
                "'{}' is not an event id; give the number in the ID column of 'pai audit list'",
                args.id
            )
        })?;
    let log = open(env)?;
    let Some(detail) = log.show(EventId(id))? else {
        bail!("there is no event {id} in the audit log; 'pai audit list' shows the ids");
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e = &detail.stored;
    let field = |name: &str, value: &str| outln!("{:<18} {}", format!("{name}:"), value);
    field("id", &e.id.to_string());
    field("time", &e.ts);
    field("user", &e.user);
    field("kind", e.event.kind.as_str());
    for (name, value) in [
        ("session", &e.event.session),
        ("mode", &e.event.mode),
        ("provider", &e.event.provider),
        ("endpoint", &e.event.endpoint),
        ("model", &e.event.model),
    ] {
        if !value.is_empty() {
            field(name, value);
        }
    }
    if let Some(l) = e.event.locality {
        field("locality", &l.to_string());
    }
    if let Some(u) = e.event.usage {
        field(
            "tokens",
            &format!(
                "{} in, {} out{}",
                u.prompt_tokens,
                u.completion_tokens,
                if u.estimated { " (estimated)" } else { "" }
            ),
        );
    }
    if let Some(ms) = e.event.duration_ms {
        field("duration", &format!("{ms} ms"));
    }
    field(
        "content sha256",
        detail.content_sha256.as_deref().unwrap_or("-"),
    );
    field("hash", &e.hash);
    field("prev hash", &detail.prev_hash);
    field(
        "mac",
        detail.mac.as_deref().unwrap_or("- (unkeyed legacy row)"),
    );
    if detail.purged {
        field("content", "[purged]");
    } else {
        outln!("content:");
        outln!("{}", neutralise(&pretty_content(&e.event.content)));
    }
    for hop in &detail.egress {
        outln!(
            "sent (event {}): {}",
            hop.id,
            neutralise(&hop.event.content)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// JSON content (egress rows) laid out, anything else as stored.
fn pretty_content(content: &str) -> String {
    serde_json::from_str::<serde_json::Value>(content)
        .ok()
        .filter(|v| v.is_object())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| content.to_string())
}

fn egress(env: &Env, args: EgressArgs) -> Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|w| parse_when("since", w))
        .transpose()?;
    let log = open(env)?;
    let rows = log.egress_ledger(since.as_deref())?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!(
            "no requests recorded{}",
            if since.is_some() {
                " in that period"
            } else {
                ""
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<40}  {:<6}  {:>8}  {:>10}  {:>10}  {:>8}  {:>6}  {:>8}  CLASSES",
        "ENDPOINT",
        "WHERE",
        "REQUESTS",
        "BYTES OUT",
        "BYTES IN",
        "TOKENS",
        "REDACT",
        "REFUSED"
    );
    for r in &rows {
        outln!(
            "{:<40}  {:<6}  {:>8}  {:>10}  {:>10}  {:>8}  {:>6}  {:>8}  {}",
            clip(&neutralise(&r.endpoint), 40),
            r.locality.as_deref().unwrap_or("-"),
            r.requests,
            r.bytes_out,
            r.bytes_in,
            r.tokens,
            r.redactions,
            r.refusals,
            if r.classes.is_empty() {
                "-".to_string()
            } else {
                r.classes.join(",")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(env: &Env, args: VerifyArgs) -> Result<ExitCode> {
    let path = env.paths().audit_db();
    missing(&path)?;
    let log = env.audit()?;
    let report = log.verify()?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_intact() {
        outln!("audit log {}", report.summary());
    }
    if report.is_intact() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: the audit log at {} fails verification: {}; it was changed outside pai (keep a copy as evidence)",
        path.display(),
        report.summary()
    );
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form_and_others_name_the_forms() {
        assert_eq!(parse_when("since", "2026-11-30").unwrap(), "2026-11-30");
        assert_eq!(
            parse_when("since", "2026-11-30T14:00:00Z").unwrap(),
            "2026-11-30T14:00:00.000Z"
        );
        for ago in ["30m", "2h", "7d", "2w"] {
            let at = parse_when("since", ago).unwrap();
            assert!(at.parse::<jiff::Timestamp>().unwrap() < jiff::Timestamp::now());
        }
        let err = parse_when("until", "yesterday").unwrap_err().to_string();
        assert!(
            err.starts_with("--until 'yesterday' is not a time"),
            "{err}"
        );
        assert!(err.contains("2026-11-30") && err.contains("7d"), "{err}");
    }

    #[test]
    fn plain_words_are_quoted_and_fts_syntax_is_kept() {
        assert_eq!(fts_query("api-key foo"), "\"api-key\" \"foo\"");
        assert_eq!(fts_query("wal*"), "wal*");
        assert_eq!(fts_query("a OR b"), "a OR b");
    }
}
