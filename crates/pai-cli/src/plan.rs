//! `pai agent --planner`: another model writes the plan this session's model carries out.

use anyhow::{Result, bail};
use pai_core::{Engine, Limits, Plan, SessionMeta};
use pai_types::Mode;

use crate::cli::RunArgs;
use crate::turn::Env;

/// The planner's plan for `goal`, and how to name the planner to the worker and the user.
///
/// `spec` is a session's name (its provider, model, key and budget) or `PROVIDER:MODEL`
/// (the worker session's settings with that provider and model, the key from the
/// provider's env var). The planner is offered no tools; it is told which ones the worker
/// has.
pub async fn make(
    env: &Env,
    worker: &SessionMeta,
    spec: &str,
    goal: &str,
    worker_engine: &Engine,
    run: &RunArgs,
    limits: &Limits,
) -> Result<(Plan, String)> {
    let (meta, who) = match spec.split_once(':') {
        Some((provider, model)) => {
            let (provider, model) = (provider.trim(), model.trim());
            if provider.is_empty() || model.is_empty() {
                bail!(
                    "--planner '{spec}' is neither a session nor PROVIDER:MODEL; e.g. --planner openai:gpt-4o"
                );
            }
            let mut meta = worker.clone();
            meta.provider = provider.to_string();
            meta.model = model.to_string();
            // The worker's endpoint and stored key belong to its provider, not this one.
            meta.base_url = None;
            meta.api_key = None;
            (meta, provider.to_string())
        }
        None => {
            let name = env.session(Some(spec))?;
            let meta = env.store().load_meta(&name)?;
            let who = format!("session {}: {}", meta.name, meta.provider);
            (meta, who)
        }
    };
    let quiet = RunArgs {
        no_tools: true,
        resources: Vec::new(),
        ..run.clone()
    };
    let planner = env.engine(&meta, Mode::Agent, &quiet, None).await?;
    let tools: Vec<pai_types::ToolSpec> = worker_engine
        .offered_tools(Mode::Agent)
        .infos()
        .iter()
        .map(|i| i.spec.clone())
        .collect();
    let plan = planner
        .plan(&meta.name, &meta.model, goal, &tools, limits.budget_tokens)
        .await?;
    let endpoint = pai_types::redact_endpoint(&planner.provider().info().endpoint);
    eprintln!(
        "plan by {who} ({}, {endpoint}; {} tokens):",
        plan.model,
        plan.usage.total()
    );
    for line in plan.text.lines() {
        eprintln!("  {}", crate::output::neutralise(line));
    }
    Ok((plan, who))
}
