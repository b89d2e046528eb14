//! Images attached with `-f`: sent in each API's own shape (OpenAI `image_url` parts,
//! Anthropic image blocks, Ollama `images`), refused for models that read text only, and
//! withheld whole where the policy would redact the file: an image cannot be redacted.

use base64::Engine as _;
use pai_test_support::MockOpenAi;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{FAST_CONFIG, MODEL, Pai, Run};

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

fn b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(PNG)
}

fn picture(dir: &std::path::Path, name: &str) -> String {
    write_png(dir, name, PNG)
}

fn write_png(dir: &std::path::Path, name: &str, png: &[u8]) -> String {
    let file = dir.join(name);
    std::fs::write(&file, png).unwrap();
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_goes_to_openai_as_a_data_url_part() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("a red dot", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    let pic = picture(work.path(), "dot.png");
    let run = pai
        .run(&["s", "prompt", "--no-stream", "-f", &pic, "what is this?"])
        .success();
    assert_eq!(run.stdout.trim(), "a red dot");
    let body = &mock.chat_requests().await[0];
    let parts: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .collect();
    assert!(
        parts.iter().any(|p| p["type"] == "image_url"
            && p["image_url"]["url"] == format!("data:image/png;base64,{}", b64())),
        "{body}"
    );
    // The history keeps the text, not megabytes of base64.
    let history = String::from_utf8(pai.history_bytes("s")).unwrap();
    assert!(!history.contains(&b64()), "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_gets_an_image_block_and_ollama_an_images_list() {
    let claude = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{ "type": "text", "text": "a dot" }],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": 5, "output_tokens": 3 }
        })))
        .mount(&claude)
        .await;
    let ollama = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": MODEL, "message": { "role": "assistant", "content": "a dot" },
            "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 2
        })))
        .mount(&ollama)
        .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.claude-mock]\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\nkey_env = \"MOCK_ANTHROPIC_KEY\"\n\n[providers.ollama-mock]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        claude.uri(),
        ollama.uri()
    ));
    pai.run(&["init", "c", "claude-mock", "--model", MODEL])
        .success();
    pai.run(&["init", "o", "ollama-mock", "--model", MODEL])
        .success();
    let work = tempfile::tempdir().unwrap();
    let pic = picture(work.path(), "dot.png");
    Run::from_cmd(pai.cmd().env("MOCK_ANTHROPIC_KEY", "k").args([
        "c",
        "prompt",
        "--no-stream",
        "-f",
        &pic,
        "what is it?",
    ]))
    .success();
    pai.run(&["o", "prompt", "--no-stream", "-f", &pic, "what is it?"])
        .success();

    let body = |r: &wiremock::Request| serde_json::from_slice::<Value>(&r.body).unwrap();
    let claude_body = body(&claude.received_requests().await.unwrap()[0]);
    let blocks: Vec<&Value> = claude_body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .collect();
    assert!(
        blocks.iter().any(|b| b["type"] == "image"
            && b["source"]
                == json!({ "type": "base64", "media_type": "image/png", "data": b64() })),
        "{claude_body}"
    );
    let ollama_body = body(&ollama.received_requests().await.unwrap()[0]);
    assert!(
        ollama_body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["images"] == json!([b64()])),
        "{ollama_body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_only_model_is_refused_before_anything_is_sent() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("never", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    let pic = picture(work.path(), "dot.png");
    let line = pai
        .run(&[
            "s",
            "prompt",
            "--model",
            "gpt-3.5-turbo",
            "-f",
            &pic,
            "what?",
        ])
        .failure()
        .error_line();
    assert!(
        line.contains("model 'gpt-3.5-turbo' reads text only"),
        "{line}"
    );
    assert!(line.contains("--model"), "{line}");
    assert!(mock.chat_requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_image_never_reaches_a_remote_endpoint() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 5, 3).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n",
        mock.base_url()
    ));
    pai.run(&["init", "s", "cloud", "--model", MODEL]).success();
    let work = tempfile::tempdir().unwrap();
    // A screenshot saved under a name the policy classes as secret.
    let pic = picture(work.path(), "aws-credentials.png");
    let run = Run::from_cmd(pai.cmd().env("CLOUD_KEY", "k").args([
        "s",
        "prompt",
        "--no-stream",
        "-f",
        &pic,
        "read this",
    ]))
    .success();
    let sent = mock.chat_requests().await;
    assert_eq!(sent.len(), 1, "{}", run.all_output());
    let all = serde_json::to_string(&sent).unwrap();
    assert!(!all.contains(&b64()), "the secret image left: {all}");
    assert!(all.contains("[withheld: this file"), "{all}");
    assert!(all.contains("default:secret-stays-local"), "{all}");
    assert!(!all.contains("image_url"), "{all}");
}

#[test]
fn a_binary_file_that_is_not_an_image_is_still_refused() {
    let pai = Pai::new();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("blob.bin");
    std::fs::write(&file, [0u8, 1, 2, 3, 0, 9]).unwrap();
    pai.run(&["init", "s", "openai", "--model", MODEL])
        .success();
    let line = pai
        .run(&["s", "prompt", "-f", &file.display().to_string(), "x"])
        .failure()
        .error_line();
    assert!(line.contains("PNG, JPEG, GIF or WebP"), "{line}");
}

/// A PNG whose header says 1000 × 1000 (the pixels are not needed to count it).
fn big_picture(dir: &std::path::Path) -> String {
    let mut png = PNG.to_vec();
    png[16..20].copy_from_slice(&1000u32.to_be_bytes());
    png[20..24].copy_from_slice(&1000u32.to_be_bytes());
    write_png(dir, "big.png", &png)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_counts_against_the_budget_before_anything_is_sent() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("a red dot", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    let pic = big_picture(work.path());
    // About 1,334 tokens of image alone: over a 1,300-token run budget, which the text and
    // the tool descriptions fit in with room to spare.
    let line = pai
        .run(&[
            "s",
            "prompt",
            "--budget-tokens",
            "1300",
            "-f",
            &pic,
            "what?",
        ])
        .error_line();
    assert!(
        line.contains("nothing was sent: the next request alone is about"),
        "{line}"
    );
    assert!(mock.chat_requests().await.is_empty());
    // With room for it, it goes.
    pai.run(&[
        "s",
        "prompt",
        "--budget-tokens",
        "3000",
        "-f",
        &pic,
        "what?",
    ])
    .success();
    assert_eq!(mock.chat_requests().await.len(), 1);
}
