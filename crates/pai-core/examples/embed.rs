//! Embedding pai-core in another program through its facade, [`pai_core::Workspace`]:
//! a full agent turn with tools, an approver, a token budget and cancellation (Ctrl+C).
//!
//! ```sh
//! cargo run -p pai-core --example embed -- http://127.0.0.1:8080/v1 my-model "What do my notes say?"
//! ```
//!
//! It keeps its data in a temporary PAI home and lets tools use only a temporary folder
//! holding `notes.txt`, so it touches none of your sessions or files.

use std::sync::Arc;

use pai_core::{
    Approval, ApprovalRequest, Approver, Cancel, EngineOptions, Event, Limits, Paths, SessionMeta,
    Turn, TurnEnd, Workspace,
};
use pai_types::Mode;

/// Approves every write inside the example's folder and says so; a real program would
/// ask its user here (over a channel, in a dialog…).
struct ApproveAndTell;

#[async_trait::async_trait]
impl Approver for ApproveAndTell {
    async fn approve(&self, request: &ApprovalRequest) -> Approval {
        eprintln!("[approving {} {}]", request.tool, request.arguments);
        Approval::Yes
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(base_url), Some(model)) = (args.next(), args.next()) else {
        eprintln!("usage: embed <base-url> <model> [goal]");
        std::process::exit(2);
    };
    let goal = args
        .next()
        .unwrap_or_else(|| "What do my notes say? Read notes.txt.".into());

    let home = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    std::fs::write(work.path().join("notes.txt"), "buy oat milk; call Ana at 6")?;
    let ws = Workspace::open(Paths::new(
        home.path().join("data"),
        home.path().join("config"),
    ))?;

    let mut meta = SessionMeta::new(pai_types::SessionName::new("embedded")?, "openai", &model);
    meta.base_url = Some(base_url);
    ws.store().create(&meta, false)?;

    let opts = EngineOptions {
        approver: Arc::new(ApproveAndTell),
        ..EngineOptions::new(work.path())
    };
    let wired = ws.engine(&meta, Mode::Agent, &opts).await?;
    for warning in wired.warnings {
        eprintln!("warning: {warning}");
    }
    let turn = Turn {
        session: meta.name.clone(),
        mode: Mode::Agent,
        input: goal,
        stream: true,
        model: None,
        limits: ws.limits(Limits {
            budget_tokens: Some(20_000),
            max_steps: Some(4),
            ..Limits::default()
        }),
        system: None,
        attachments: Vec::new(),
        schema: None,
    };
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
        Cancel::Interrupted
    };
    let mut show = |event| match event {
        Event::Delta(text) => print!("{text}"),
        Event::ToolCall { name, arguments } => eprintln!("[tool {name} {arguments}]"),
        Event::ToolResult { name, outcome } => eprintln!("[{name}: {outcome:?}]"),
        _ => {}
    };
    match wired.engine.run_until(&turn, &mut show, cancel).await? {
        TurnEnd::Done(outcome) => {
            println!();
            if let Some(why) = outcome.stopped {
                eprintln!("[stopped: {why}]");
            }
            eprintln!(
                "[{} tokens, {} tool calls]",
                outcome.usage.total(),
                outcome.tool_calls
            );
        }
        TurnEnd::Cancelled { reason, .. } => eprintln!("\n[cancelled: {reason}]"),
    }
    Ok(())
}
