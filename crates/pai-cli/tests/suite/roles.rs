//! System prompts and roles: `--system` for one run, a session's own system prompt,
//! `[roles.<name>]` with `--role`, `pai roles`, and templates filled from `--var` and the
//! input. The system prompt is a part like any other: the egress gate screens it.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::{FAST_CONFIG, MODEL, Pai, snapshot};

const DEFAULT_SYSTEM: &str = "You are PAI, a concise and helpful personal assistant.";

fn system_of(body: &Value) -> &Value {
    let first = &body["messages"][0];
    assert_eq!(first["role"], "system", "{body}");
    &first["content"]
}

fn roles_config(url: &str) -> String {
    format!(
        r#"{FAST_CONFIG}
[roles.reviewer]
system = "You review code. Be blunt."
model = "review-model"
temperature = 0.2

[roles.summarise]
about = "Summarise text in a few bullets"
system = "You summarise for {{{{audience|engineers}}}}."
prompt = "Summarise in {{{{n|3}}}} bullets:\n\n{{{{input}}}}"

[roles.joke]
prompt = "Tell a joke about {{{{topic}}}}."

[providers.near]
kind = "openai-compatible"
base_url = "{url}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn system_flag_is_for_one_run_and_the_session_keeps_its_own() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run(&["s", "prompt", "--system", "Answer in Portuguese.", "hi"])
        .success();
    pai.run(&["s", "prompt", "again"]).success();
    let set = pai
        .run(&["s", "system", "You are a pirate."])
        .success()
        .stdout;
    pai.run(&["s", "prompt", "third"]).success();
    pai.run(&["s", "prompt", "--system", "Be brief.", "fourth"])
        .success();

    assert_eq!(set, "session 's' now runs with its own system prompt\n");
    let systems: Vec<Value> = mock
        .chat_requests()
        .await
        .iter()
        .map(|b| system_of(b).clone())
        .collect();
    assert_eq!(
        systems,
        [
            json!("Answer in Portuguese."),
            json!(DEFAULT_SYSTEM),
            json!("You are a pirate."),
            json!("Be brief."),
        ]
    );
    assert_eq!(pai.session_json("s")["system"], "You are a pirate.");
    assert_eq!(pai.status_json("s")["system"], "You are a pirate.");
    let status = pai.run(&["s", "status"]).success().stdout;
    assert!(status.contains("system    You are a pirate.\n"), "{status}");
    assert_eq!(
        pai.run(&["s", "system"]).success().stdout,
        "You are a pirate.\n"
    );

    let cleared = pai.run(&["s", "system", "none"]).success();
    assert_eq!(
        cleared.stdout,
        "session 's' has no system prompt of its own now; the default ([context] system_prompt) applies\n"
    );
    assert_eq!(pai.session_json("s").get("system"), None);
    let shown = pai.run(&["s", "system"]).success();
    assert_eq!(shown.stdout, format!("{DEFAULT_SYSTEM}\n"));
    assert!(shown.stderr.contains("the default"), "{}", shown.stderr);
    let line = pai.run(&["s", "system", "  "]).error_line();
    assert!(line.contains("cannot be empty"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_brings_its_system_prompt_model_and_temperature() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("looks fine", 1, 1).await;
    let pai = Pai::new();
    pai.home.write_config(&roles_config(&mock.base_url()));
    pai.run(&["init", "s", "near", "--model", MODEL]).success();
    pai.run(&["s", "system", "Session prompt."]).success();

    pai.run(&["s", "prompt", "--role", "reviewer", "fn main() {}"])
        .success();
    // --model and --system still win over the role's.
    pai.run(&[
        "s", "prompt", "--role", "reviewer", "--model", "other", "--system", "Mine.", "x",
    ])
    .success();

    let bodies = mock.chat_requests().await;
    let picked = |b: &Value| {
        json!({
            "model": b["model"],
            "temperature": b["temperature"],
            "system": system_of(b),
        })
    };
    assert_eq!(
        picked(&bodies[0]),
        json!({ "model": "review-model", "temperature": 0.2, "system": "You review code. Be blunt." })
    );
    assert_eq!(
        picked(&bodies[1]),
        json!({ "model": "other", "temperature": 0.2, "system": "Mine." })
    );
    // The role does not change the session.
    assert_eq!(pai.status_json("s")["model"], MODEL);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_filled_from_vars_stdin_and_defaults() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("- a", 1, 1).await;
    let pai = Pai::new();
    pai.home.write_config(&roles_config(&mock.base_url()));
    pai.run(&["init", "s", "near", "--model", MODEL]).success();

    pai.run_stdin(
        &["s", "prompt", "--role", "summarise"],
        "The meeting moved to Friday.\n",
    )
    .success();
    pai.run(&[
        "s",
        "prompt",
        "--role",
        "summarise",
        "--var",
        "n=5",
        "--var",
        "audience=managers",
        "some notes",
    ])
    .success();
    // A template that needs no input of its own runs on its values alone.
    pai.run(&["s", "prompt", "--role", "joke", "--var", "topic=cats"])
        .success();

    let bodies = mock.chat_requests().await;
    let last_user =
        |b: &Value| b["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    assert_eq!(
        (system_of(&bodies[0]).clone(), last_user(&bodies[0])),
        (
            json!("You summarise for engineers."),
            json!("Summarise in 3 bullets:\n\nThe meeting moved to Friday.\n")
        )
    );
    assert_eq!(
        (system_of(&bodies[1]).clone(), last_user(&bodies[1])),
        (
            json!("You summarise for managers."),
            json!("Summarise in 5 bullets:\n\nsome notes")
        )
    );
    assert_eq!(last_user(&bodies[2]), json!("Tell a joke about cats."));

    let line = pai.run(&["s", "prompt", "--role", "joke"]).error_line();
    assert_eq!(
        line,
        "error: the template needs a value for '{{topic}}'; pass --var topic=…"
    );
    let line = pai
        .run(&["s", "prompt", "--var", "oops", "x"])
        .failure()
        .stderr;
    assert!(line.contains("is not NAME=VALUE"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_listed_and_an_unknown_one_names_the_defined_ones() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    assert!(
        pai.run(&["roles"])
            .success()
            .stdout
            .starts_with("no roles yet; define one in ")
    );
    pai.init("s", &mock.base_url());
    let line = pai.run(&["prompt", "--role", "ghost", "x"]).error_line();
    assert_eq!(
        line,
        "error: no role 'ghost': config.toml defines no roles; add one under [roles.ghost] with a system prompt"
    );

    pai.home.write_config(&roles_config(&mock.base_url()));
    snapshot!(pai, "roles", pai.run(&["roles"]).success().stdout);
    let json = pai.run(&["roles", "--json"]).success().json();
    assert_eq!(json[0]["name"], "joke");
    assert_eq!(json[0]["placeholders"], json!(["topic"]));

    let line = pai.run(&["prompt", "--role", "ghost", "x"]).error_line();
    assert_eq!(
        line,
        "error: no role 'ghost'; the roles defined in config.toml are: joke, reviewer, summarise"
    );
    assert!(mock.chat_requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_the_system_prompt_is_redacted_for_a_remote_endpoint() {
    const KEY: &str = "AKIAQ3EGRJ7MNOZ4V5XA";
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n",
        mock.base_url()
    ));
    pai.run(&["init", "r", "cloud", "--model", MODEL]).success();

    super::Run::from_cmd(pai.cmd().env("CLOUD_KEY", "k").args([
        "r",
        "prompt",
        "--system",
        &format!("Deploy with {KEY}."),
        "hi",
    ]))
    .success();

    let bodies = mock.chat_requests().await;
    assert_eq!(
        system_of(&bodies[0]),
        &json!("Deploy with \u{27e8}AWS_KEY_1\u{27e9}.")
    );
    // A dry run shows the system prompt as its own part, with its origin and decision.
    let dry = super::Run::from_cmd(pai.cmd().env("CLOUD_KEY", "k").args([
        "r",
        "prompt",
        "--dry-run",
        "--system",
        &format!("Deploy with {KEY}."),
        "hi",
    ]))
    .success()
    .stdout;
    assert!(
        dry.contains("── part 1: system · system prompt · internal · 1 value(s) redacted"),
        "{dry}"
    );
    assert!(!dry.contains(KEY), "{dry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roles_temperature_reaches_anthropic_and_ollama_in_their_own_shape() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let claude = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{ "type": "text", "text": "ok" }],
            "stop_reason": "end_turn", "usage": { "input_tokens": 1, "output_tokens": 1 }
        })))
        .mount(&claude)
        .await;
    let ollama = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": MODEL, "message": { "role": "assistant", "content": "ok" },
            "done": true, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1
        })))
        .mount(&ollama)
        .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[roles.calm]\nsystem = \"Be calm.\"\ntemperature = 0.2\n\n[providers.claude-mock]\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\nkey_env = \"MOCK_ANTHROPIC_KEY\"\n\n[providers.ollama-mock]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        claude.uri(),
        ollama.uri()
    ));
    pai.run(&["init", "c", "claude-mock", "--model", MODEL])
        .success();
    pai.run(&["init", "o", "ollama-mock", "--model", MODEL])
        .success();

    super::Run::from_cmd(
        pai.cmd()
            .env("MOCK_ANTHROPIC_KEY", "k")
            .args(["c", "prompt", "--role", "calm", "x"]),
    )
    .success();
    pai.run(&["o", "prompt", "--role", "calm", "x"]).success();

    let body = |r: &wiremock::Request| serde_json::from_slice::<Value>(&r.body).unwrap();
    let claude_body = body(&claude.received_requests().await.unwrap()[0]);
    let ollama_body = body(&ollama.received_requests().await.unwrap()[0]);
    assert_eq!(
        (&claude_body["temperature"], &claude_body["system"]),
        (&json!(0.2), &json!("Be calm."))
    );
    assert_eq!(ollama_body["options"], json!({ "temperature": 0.2 }));
}
