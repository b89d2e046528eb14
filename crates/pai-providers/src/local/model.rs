//! Loading a GGUF: the checks that turn a bad file into one clear error, then weights,
//! tokenizer, chat template and stop tokens.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use tokenizers::Tokenizer;

use pai_llama::Llama;

use super::LocalModelInfo;
use super::requant::requantize;
use super::template::ChatTemplate;
use crate::error::{ProviderError, Result};

/// Architectures this provider runs, with the candle model that runs each.
const ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// Tokens that end an assistant turn in the chat formats PAI knows, besides the file's EOS.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
];

pub(crate) enum Weights {
    /// Llama-architecture files whose layouts `llama.rs` covers: most of them, SmolLM2 too.
    Native(Box<Llama>),
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Weights {
    /// Logits for the token after `tokens`, which continue a sequence at `position`.
    pub(crate) fn forward(
        &mut self,
        tokens: &[u32],
        position: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = match self {
            Weights::Native(m) => return m.forward(tokens, position),
            Weights::Llama(m) => m.forward(&input, position)?,
            Weights::Qwen2(m) => m.forward(&input, position)?,
        };
        logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Weights::Native(m) => m.clear(),
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
        }
    }
}

/// A model ready to generate.
pub(crate) struct Loaded {
    pub(crate) weights: Weights,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) template: ChatTemplate,
    /// Tokens that end the answer.
    pub(crate) stops: BTreeSet<u32>,
    pub(crate) info: LocalModelInfo,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::CorruptModel {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

fn unsupported(path: &Path, detail: impl Into<String>) -> ProviderError {
    ProviderError::UnsupportedModel {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn meta_str<'a>(content: &'a Content, key: &str) -> Option<&'a str> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

fn meta_u64(content: &Content, key: &str) -> Option<u64> {
    match content.metadata.get(key)? {
        Value::U8(v) => Some(u64::from(*v)),
        Value::U16(v) => Some(u64::from(*v)),
        Value::U32(v) => Some(u64::from(*v)),
        Value::U64(v) => Some(*v),
        Value::I32(v) => u64::try_from(*v).ok(),
        Value::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Opens `path` and reads its GGUF header, refusing what is not a GGUF or is cut short.
fn open(path: &Path) -> Result<(Content, BufReader<File>)> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProviderError::ModelMissing {
            path: path.display().to_string(),
            hint: format!(
                "add a model with 'pai models add <file.gguf>'; for the default model, {}",
                super::GET_DEFAULT_MODEL
            ),
        },
        _ => corrupt(path, format!("cannot read it: {e}")),
    })?;
    let file_len = file.metadata().map_err(|e| corrupt(path, e))?.len();
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    if reader.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(ProviderError::NotGguf {
            path: path.display().to_string(),
        });
    }
    reader
        .seek_relative(-4)
        .map_err(|e| corrupt(path, format!("cannot read it: {e}")))?;
    let content = Content::read(&mut reader).map_err(|e| corrupt(path, one_line(&e)))?;
    // Every tensor must lie inside the file: a cut-off download fails here, before any
    // weight is read, with the sizes that tell what happened.
    let needed = content
        .tensor_infos
        .values()
        .map(|t| {
            let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
            content.tensor_data_offset + t.offset + bytes as u64
        })
        .max()
        .unwrap_or(content.tensor_data_offset);
    if needed > file_len {
        return Err(corrupt(
            path,
            format!("it is {file_len} bytes but its tensors need {needed}"),
        ));
    }
    Ok((content, reader))
}

/// A candle error as one line.
fn one_line(e: &candle_core::Error) -> String {
    crate::error::one_line(&e.to_string())
}

fn storage_type(content: &Content) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in content.tensor_infos.values() {
        *counts.entry(format!("{:?}", t.ggml_dtype)).or_default() += t.shape.elem_count();
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(name, _)| name)
        .unwrap_or_default()
}

impl Loaded {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let started = Instant::now();
        let (content, mut reader) = open(path)?;
        let architecture = meta_str(&content, "general.architecture")
            .unwrap_or("unknown")
            .to_string();
        if !ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(unsupported(
                path,
                format!(
                    "its architecture is '{architecture}', and only {} models run here; pick a llama-family GGUF",
                    ARCHITECTURES.join(" and ")
                ),
            ));
        }
        let tokenizer = Tokenizer::from_gguf(&content).map_err(|e| {
            unsupported(
                path,
                format!("its tokenizer cannot be built ({})", one_line(&e)),
            )
        })?;
        let token = |key: &str| -> Option<(u32, String)> {
            let id = u32::try_from(meta_u64(&content, key)?).ok()?;
            Some((id, tokenizer.id_to_token(id)?))
        };
        let bos = token("tokenizer.ggml.bos_token_id");
        let eos = token("tokenizer.ggml.eos_token_id");
        let template = ChatTemplate::new(
            meta_str(&content, "tokenizer.chat_template"),
            bos.as_ref().map(|(_, t)| t.as_str()),
            eos.as_ref().map(|(_, t)| t.as_str()),
        )
        .map_err(|e| unsupported(path, e))?;
        let mut stops: BTreeSet<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        stops.extend(eos.map(|(id, _)| id));

        let context_length =
            meta_u64(&content, &format!("{architecture}.context_length")).unwrap_or(2048);
        let parameters = content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64)
            .sum();
        let quantization = storage_type(&content);
        let name = meta_str(&content, "general.name").map(str::to_string);

        // candle precomputes llama's rotary tables for this many positions only; the native
        // decoder keeps the same window, which also bounds its KV cache.
        let llama_context = context_length.min(quantized_llama::MAX_SEQ_LEN as u64);
        let native = match architecture.as_str() {
            "llama" => {
                Llama::load(&content, &mut reader).map_err(|e| corrupt(path, one_line(&e)))?
            }
            _ => None,
        };
        let (weights, context_length, converted) = match native {
            Some(model) => (Weights::Native(Box::new(model)), llama_context, 0),
            None => candle_weights(path, &architecture, content, reader, context_length)?,
        };
        tracing::info!(
            path = %path.display(),
            %architecture,
            %quantization,
            engine = if matches!(weights, Weights::Native(_)) { "pai" } else { "candle" },
            converted_to_q8_0 = converted,
            load_ms = started.elapsed().as_millis() as u64,
            "local model loaded"
        );
        Ok(Self {
            weights,
            tokenizer,
            template,
            stops,
            info: LocalModelInfo {
                architecture,
                name,
                context_length,
                quantization,
                parameters,
            },
        })
    }
}

/// The model on candle's own implementation, its slow layouts widened to Q8_0 as read.
fn candle_weights(
    path: &Path,
    architecture: &str,
    mut content: Content,
    reader: BufReader<File>,
    context_length: u64,
) -> Result<(Weights, u64, usize)> {
    let (mut reader, converted) = requantize(&mut content, reader);
    let device = Device::Cpu;
    Ok(match architecture {
        "qwen2" => (
            Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &device)
                    .map_err(|e| corrupt(path, one_line(&e)))?,
            ),
            context_length,
            converted,
        ),
        _ => (
            Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, &device)
                    .map_err(|e| corrupt(path, one_line(&e)))?,
            ),
            context_length.min(quantized_llama::MAX_SEQ_LEN as u64),
            converted,
        ),
    })
}
