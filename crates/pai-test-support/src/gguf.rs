#![allow(clippy::expect_used)] // test fixture: a failure to build it is a failed test
//! A tiny llama-architecture GGUF (about 70 KB) written by candle, for testing the local
//! provider without downloading a model: 2 layers, hidden size 64, a byte-level vocabulary
//! with ChatML's special tokens, and SmolLM2's chat template.
//!
//! Its weights are random except for what makes its answers predictable: each token's
//! embedding is a random direction, layers only add a little noise, and the output row of
//! a token points at the embedding of the token meant to precede it. So after the prompt,
//! which ChatML ends with a newline, the model spells out the given answer byte by byte
//! and then ends its turn with `<|im_end|>` — or, when told not to stop, starts the
//! answer over and over.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

const HIDDEN: usize = 64;
/// The most tokens prompt and answer together may take.
pub const TINY_CONTEXT: u32 = 256;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 128;
const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const IM_END: usize = 2;
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// What the tiny model answers to any prompt.
#[derive(Debug, Clone)]
pub struct TinyModel {
    /// The answer's bytes must all differ from each other and from `\n`.
    pub answer: String,
    /// End the turn after the answer (else repeat it, each time after a newline, until
    /// stopped).
    pub stops: bool,
}

impl Default for TinyModel {
    fn default() -> Self {
        Self {
            answer: "Hé!".into(),
            stops: true,
        }
    }
}

/// GPT-2's byte-to-character table: how a byte-level BPE vocabulary spells each byte.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

/// The token id of byte `b`.
fn byte_token(b: u8) -> usize {
    SPECIALS.len() + usize::from(b)
}

/// A deterministic generator, so every run builds the same model.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn matrix(&mut self, rows: usize, cols: usize, scale: f32) -> Vec<f32> {
        (0..rows * cols).map(|_| self.next() * scale).collect()
    }

    fn unit(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..HIDDEN).map(|_| self.next()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn q(data: Vec<f32>, rows: usize, cols: usize, dtype: GgmlDType) -> QTensor {
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).expect("tensor shape");
    QTensor::quantize(&t, dtype).expect("quantize")
}

fn ones(n: usize) -> QTensor {
    let t = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).expect("ones");
    QTensor::quantize(&t, GgmlDType::F32).expect("f32 tensor")
}

/// The GGUF file's bytes.
pub fn tiny_llama_gguf(model: &TinyModel) -> Vec<u8> {
    let vocab = SPECIALS.len() + 256;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let embeddings: Vec<Vec<f32>> = (0..vocab).map(|_| rng.unit()).collect();

    // The chain of tokens the answer follows: "\n" → answer bytes → <|im_end|> (or back).
    let mut chain = vec![byte_token(b'\n')];
    chain.extend(model.answer.bytes().map(byte_token));
    let mut rows: Vec<Vec<f32>> = (0..vocab).map(|_| rng.unit()).collect();
    for pair in chain.windows(2) {
        rows[pair[1]] = embeddings[pair[0]].clone();
    }
    let last = chain.last().copied().unwrap_or(byte_token(b'\n'));
    if model.stops {
        rows[IM_END] = embeddings[last].clone();
    } else {
        // Back to the newline: the answer repeats, a line at a time, until stopped.
        rows[byte_token(b'\n')] = embeddings[last].clone();
    }

    let flat = |m: &[Vec<f32>]| m.iter().flatten().copied().collect::<Vec<f32>>();
    let head_dim = HIDDEN / HEADS;
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            q(flat(&embeddings), vocab, HIDDEN, GgmlDType::Q8_0),
        ),
        ("output_norm.weight".into(), ones(HIDDEN)),
        (
            "output.weight".into(),
            q(flat(&rows), vocab, HIDDEN, GgmlDType::Q8_0),
        ),
    ];
    // Layers add only small noise to the residual stream; stored as Q4_1, so loading
    // runs the re-quantisation to Q8_0.
    let noise = 0.01;
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        let mut add = |name: &str, rows: usize, cols: usize| {
            let data = rng.matrix(rows, cols, noise);
            tensors.push((
                format!("{p}.{name}.weight"),
                q(data, rows, cols, GgmlDType::Q4_1),
            ));
        };
        add("attn_q", HIDDEN, HIDDEN);
        add("attn_k", KV_HEADS * head_dim, HIDDEN);
        add("attn_v", KV_HEADS * head_dim, HIDDEN);
        add("attn_output", HIDDEN, HIDDEN);
        add("ffn_gate", FFN, HIDDEN);
        add("ffn_up", FFN, HIDDEN);
        add("ffn_down", HIDDEN, FFN);
        tensors.push((format!("{p}.attn_norm.weight"), ones(HIDDEN)));
        tensors.push((format!("{p}.ffn_norm.weight"), ones(HIDDEN)));
    }

    let mut tokens: Vec<Value> = SPECIALS
        .iter()
        .map(|s| Value::String((*s).into()))
        .collect();
    tokens.extend((0..=255u8).map(|b| Value::String(byte_char(b).to_string())));
    let mut types = vec![Value::I32(3); SPECIALS.len()];
    types.extend(std::iter::repeat_n(Value::I32(1), 256));
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny test llama".into())),
        ("llama.context_length", Value::U32(TINY_CONTEXT)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(Vec::new())),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(IM_END as u32)),
        (
            "tokenizer.chat_template",
            Value::String(SMOLLM2_TEMPLATE.into()),
        ),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).expect("write the tiny GGUF");
    out.into_inner()
}

/// Writes the tiny model to `path`.
pub fn write_tiny_llama(path: &Path, model: &TinyModel) {
    std::fs::write(path, tiny_llama_gguf(model)).expect("write the tiny GGUF");
}
