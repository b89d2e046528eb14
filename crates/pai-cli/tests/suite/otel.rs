//! The OpenTelemetry exporter (`--features otel`): a loopback OTLP/HTTP receiver started
//! here gets one trace per turn, with the GenAI and PAI attributes and no content; a dead
//! collector costs one warning line and the turn still succeeds.

use pai_test_support::MockOpenAi;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::Pai;

/// Every span the receiver got, as (name, attributes as key → value text).
fn spans(bodies: &[Value]) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for body in bodies {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|kv| {
                            let v = &kv["value"];
                            // OTLP JSON writes 64-bit integers as strings or numbers.
                            let text = ["stringValue", "intValue", "boolValue"]
                                .iter()
                                .find_map(|k| match &v[k] {
                                    Value::Null => None,
                                    Value::String(s) => Some(s.clone()),
                                    other => Some(other.to_string()),
                                })
                                .unwrap_or_default();
                            (kv["key"].as_str().unwrap().to_string(), text)
                        })
                        .collect();
                    out.push((span["name"].as_str().unwrap().to_string(), attrs));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn each_turn_is_a_trace_with_gen_ai_attributes_and_no_content() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer about wombats", 5, 2).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}\n[audit.otel]\nendpoint = \"{}\"\n",
        super::FAST_CONFIG,
        receiver.uri()
    ));
    pai.init("s", &mock.base_url());
    let run = pai
        .run(&["s", "prompt", "tell me about platypusparade"])
        .success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);

    let requests = receiver.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    let mut bodies = Vec::new();
    for r in &requests {
        let text = String::from_utf8_lossy(&r.body).to_string();
        // Neither the prompt nor the answer leaves in the trace.
        assert!(!text.contains("platypusparade"), "{text}");
        assert!(!text.contains("wombats"), "{text}");
        bodies.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let spans = spans(&bodies);
    let root = spans
        .iter()
        .find(|(name, _)| name == "pai prompt")
        .unwrap_or_else(|| panic!("no turn span in {spans:?}"));
    assert_eq!(root.1["pai.session"], "s");
    assert_eq!(root.1["pai.mode"], "prompt");
    assert_eq!(root.1["pai.locality"], "local");
    let chat = spans
        .iter()
        .find(|(_, a)| a.get("gen_ai.operation.name").is_some_and(|v| v == "chat"))
        .unwrap_or_else(|| panic!("no model call span in {spans:?}"));
    assert!(chat.0.starts_with("chat "), "{}", chat.0);
    for key in ["gen_ai.system", "gen_ai.request.model", "server.address"] {
        assert!(!chat.1[key].is_empty(), "{key} in {:?}", chat.1);
    }
    assert_eq!(chat.1["gen_ai.usage.input_tokens"], "5");
    assert_eq!(chat.1["gen_ai.usage.output_tokens"], "2");
    let egress = spans
        .iter()
        .find(|(name, _)| name == "egress")
        .unwrap_or_else(|| panic!("no egress span in {spans:?}"));
    assert!(egress.1.contains_key("pai.classes"), "{:?}", egress.1);
    assert!(egress.1.contains_key("pai.egress.bytes"), "{:?}", egress.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_is_one_warning_and_the_turn_still_answers() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}\n[audit.otel]\nendpoint = \"http://127.0.0.1:{port}\"\n",
        super::FAST_CONFIG
    ));
    pai.init("s", &mock.base_url());
    let run = pai.run(&["s", "prompt", "hello"]).success();
    assert_eq!(run.stdout, "an answer\n");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].starts_with("warning: could not send the turn's trace to http://127.0.0.1:"),
        "{}",
        warnings[0]
    );
}
