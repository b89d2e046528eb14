//! `pai agent --planner`: one model plans, this session's model carries the plan out. Both
//! calls pass the same gate: a secret in the goal reaches a remote planner only as a
//! placeholder, each call is audited under its own provider and model, and the run's
//! budget covers both.

use pai_audit::{EventKind, SqliteAudit};
use pai_test_support::MockOpenAi;
use serde_json::{Value, json};

use super::tools::{Script, answer, tool_call};
use super::{FAST_CONFIG, Pai, Run};

const AWS_KEY: &str = "AKIAQ3EGRJ7MNOZ4V5XA";
const PLAN: &str = "1. Use current_time to read the clock.\n2. Report the time to the user.";

fn config(planner_url: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[providers.planbox]\nkind = \"openai-compatible\"\nbase_url = \"{planner_url}\"\nlocality = \"remote\"\nkey_env = \"PLAN_KEY\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_planner_plans_the_local_worker_acts_and_both_are_gated_and_counted() {
    let planner = MockOpenAi::start().await;
    planner.reply_json(PLAN, 120, 30).await;
    let (worker, script) = Script::mount(vec![
        tool_call("current_time", json!({}), 10),
        answer("it is noon", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&config(&planner.base_url()));
    pai.init("s", &worker.base_url());

    let goal = format!("what time is it? my key is {AWS_KEY}");
    let run = Run::from_cmd(pai.cmd().env("PLAN_KEY", "pk-test").args([
        "s",
        "agent",
        "--planner",
        "planbox:big-model",
        &goal,
    ]))
    .success();
    assert!(run.stdout.contains("it is noon"), "{}", run.all_output());
    assert!(
        run.stderr.contains("plan by planbox (big-model"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("  1. Use current_time"),
        "{}",
        run.stderr
    );

    // The planner got the goal (its secret as a placeholder: it is remote), the worker's
    // tools by name, and no tools of its own.
    let asked = planner.chat_requests().await;
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["model"], "big-model");
    assert!(asked[0].get("tools").is_none(), "{}", asked[0]);
    let sent = asked[0].to_string();
    assert!(
        !sent.contains(AWS_KEY),
        "the secret reached the remote planner"
    );
    assert!(sent.contains("what time is it?"), "{sent}");
    assert!(sent.contains("current_time"), "{sent}");

    // The worker got the goal and the plan, and did the work with its tools.
    let first = serde_json::to_string(&script.requests()[0]).unwrap();
    assert!(
        first.contains("Use current_time to read the clock"),
        "{first}"
    );
    assert!(
        first.contains("A planner (planbox, model big-model)"),
        "{first}"
    );
    assert_eq!(script.requests().len(), 2);

    // Each call is in the audit under its own provider and model, and in `pai usage`.
    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    let events = audit.events(1000).unwrap();
    let plan_prompt = events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::Prompt && e.event.content.contains("[plan for the worker]")
        })
        .expect("the planner's call is audited");
    assert_eq!(plan_prompt.event.provider, "planbox");
    assert_eq!(plan_prompt.event.model, "big-model");
    assert!(!plan_prompt.event.content.contains(AWS_KEY));
    let usage: Value = pai.run(&["usage", "--json"]).success().json();
    let models: Vec<&str> = usage
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["model"].as_str().unwrap())
        .collect();
    assert!(models.contains(&"big-model"), "{usage}");
    assert!(models.contains(&super::MODEL), "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_counts_against_the_run_budget() {
    let planner = MockOpenAi::start().await;
    // The plan alone costs 900 of the run's 1000 tokens: the worker's request cannot fit.
    planner.reply_json(PLAN, 800, 100).await;
    let (worker, script) = Script::mount(vec![answer("never", 10)]).await;
    let pai = Pai::new();
    pai.home.write_config(&config(&planner.base_url()));
    pai.init("s", &worker.base_url());
    let run = Run::from_cmd(pai.cmd().env("PLAN_KEY", "pk-test").args([
        "s",
        "agent",
        "--budget-tokens",
        "1000",
        "--planner",
        "planbox:big-model",
        "plan this",
    ]))
    .failure();
    // The plan is shown, then one error line.
    assert!(run.stderr.starts_with("plan by planbox"), "{}", run.stderr);
    let line = run.stderr.trim_end().lines().last().unwrap().to_string();
    assert!(line.starts_with("error: "), "{line}");
    assert!(script.requests().is_empty(), "the worker was called");
    assert!(line.contains("the plan was made"), "{line}");
    assert!(
        line.contains("the worker's first request was not sent"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planner_session_plans_with_its_own_provider_and_a_bad_one_is_one_error() {
    let planner = MockOpenAi::start().await;
    planner.reply_json(PLAN, 10, 10).await;
    let (worker, script) = Script::mount(vec![answer("done", 10)]).await;
    let pai = Pai::new();
    pai.init("thinker", &planner.base_url());
    pai.init("s", &worker.base_url());
    let run = pai
        .run(&["s", "agent", "--planner", "thinker", "tidy up"])
        .success();
    assert!(
        run.stderr.contains("plan by session thinker"),
        "{}",
        run.stderr
    );
    assert_eq!(planner.chat_requests().await.len(), 1);
    let first = serde_json::to_string(&script.requests()[0]).unwrap();
    assert!(first.contains("Report the time to the user"), "{first}");
    // The planner session's history is untouched: a plan is not a conversation.
    assert!(pai.history("thinker").is_empty());

    let line = pai
        .run(&["s", "agent", "--planner", "nosuch", "tidy up"])
        .failure()
        .error_line();
    assert!(line.contains("nosuch"), "{line}");
    let line = pai
        .run(&["s", "agent", "--planner", "nosuchprovider:m", "tidy up"])
        .failure()
        .error_line();
    assert!(line.contains("nosuchprovider"), "{line}");
}

/// Two engines (planner and worker) are built from one workspace: what it has to say about
/// its settings is said once, not once per engine.
#[cfg(not(feature = "otel"))]
#[tokio::test(flavor = "multi_thread")]
async fn a_settings_warning_is_said_once_though_two_engines_are_built() {
    let planner = MockOpenAi::start().await;
    planner.reply_json(PLAN, 10, 10).await;
    let (worker, _script) = Script::mount(vec![answer("done", 10)]).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}\n[audit.otel]\nendpoint = \"http://127.0.0.1:4318\"\n",
        config(&planner.base_url())
    ));
    pai.init("s", &worker.base_url());
    let run = Run::from_cmd(pai.cmd().env("PLAN_KEY", "pk-test").args([
        "s",
        "agent",
        "--planner",
        "planbox:big-model",
        "plan this",
    ]))
    .success();
    assert_eq!(
        run.stderr.matches("[audit.otel] is set").count(),
        1,
        "{}",
        run.stderr
    );
}
