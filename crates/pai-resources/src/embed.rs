//! A sentence-embedding model run in-process: a BERT encoder (candle), its WordPiece
//! tokenizer (`tokenizers`), mean pooling over the tokens and L2 normalisation — what
//! sentence-transformers does for models such as all-MiniLM-L6-v2. CPU only; the weights
//! are read once (`model.safetensors`, f32) and nothing is downloaded.
//!
//! A model directory holds `config.json` (a BERT configuration), `model.safetensors`,
//! `tokenizer.json` and, when present, `1_Pooling/config.json` (which must ask for mean
//! pooling) and `sentence_bert_config.json` (its `max_seq_length` caps the tokens per text).

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::vector::Embed;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Texts embedded per forward pass at most (memory grows with batch × tokens²).
const BATCH: usize = 4;

/// A BERT sentence-embedding model, loaded.
pub struct BertEmbedder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    dims: usize,
    max_tokens: usize,
    device: Device,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("name", &self.name)
            .field("dims", &self.dims)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// What a model directory says about itself, read without loading the weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `model_type` (e.g. `bert`).
    pub architecture: String,
    /// Vector length (`hidden_size`).
    pub dims: usize,
    /// Tokens per text at most.
    pub max_tokens: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Weights in `model.safetensors`.
    pub parameters: u64,
    /// Their storage type (`F32`; `mixed` when they differ).
    pub dtype: String,
}

/// The weight count and storage type, from a safetensors file's header (8 bytes of
/// length, then JSON naming each tensor's dtype and shape).
fn weights(path: &Path) -> Result<(u64, String), String> {
    use std::io::Read;
    let bad = |why: String| format!("{} is not a safetensors file ({why})", path.display());
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad("its header is too large".into()));
    }
    let mut head = vec![0u8; len as usize];
    f.read_exact(&mut head).map_err(|e| bad(e.to_string()))?;
    let head: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&head).map_err(|e| bad(e.to_string()))?;
    let mut parameters = 0u64;
    let mut dtype: Option<String> = None;
    for (name, t) in &head {
        if name == "__metadata__" {
            continue;
        }
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("tensor {name} has no shape")))?;
        let d = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        // Integer tensors (e.g. a stored `position_ids`) are buffers, not weights.
        if !matches!(d, "F64" | "F32" | "F16" | "BF16") {
            continue;
        }
        parameters += shape
            .iter()
            .map(|d| d.as_u64().unwrap_or(0))
            .product::<u64>();
        dtype = match dtype {
            None => Some(d.to_string()),
            Some(prev) if prev == d => Some(prev),
            Some(_) => Some("mixed".to_string()),
        };
    }
    Ok((parameters, dtype.unwrap_or_else(|| "F32".into())))
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

/// Reads and checks a model directory's configuration: a BERT encoder with mean pooling.
pub fn inspect(dir: &Path) -> Result<(ModelInfo, Config), String> {
    for f in MODEL_FILES {
        if !dir.join(f).is_file() {
            return Err(format!("it has no {f}"));
        }
    }
    let raw = read_json(&dir.join("config.json"))?;
    let model_type = raw
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("bert")
        .to_string();
    if model_type != "bert" {
        return Err(format!(
            "its config.json describes a '{model_type}' model; only BERT encoders are supported"
        ));
    }
    let config: Config = serde_json::from_value(raw)
        .map_err(|e| format!("its config.json is not a BERT configuration ({e})"))?;
    let pooling = dir.join("1_Pooling").join("config.json");
    if pooling.is_file() {
        let p = read_json(&pooling)?;
        let on = |k: &str| p.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if !on("pooling_mode_mean_tokens")
            || on("pooling_mode_cls_token")
            || on("pooling_mode_max_tokens")
        {
            return Err("its 1_Pooling/config.json asks for a pooling other than the mean of the tokens; only mean pooling is supported".into());
        }
    }
    let mut max_tokens = config.max_position_embeddings.min(512);
    let st = dir.join("sentence_bert_config.json");
    if st.is_file()
        && let Some(n) = read_json(&st)?
            .get("max_seq_length")
            .and_then(|v| v.as_u64())
    {
        max_tokens = max_tokens.min(n as usize).max(2);
    }
    let (parameters, dtype) = weights(&dir.join("model.safetensors"))?;
    Ok((
        ModelInfo {
            architecture: model_type,
            dims: config.hidden_size,
            max_tokens,
            layers: config.num_hidden_layers,
            parameters,
            dtype,
        },
        config,
    ))
}

impl BertEmbedder {
    /// Loads the model in `dir`; `name` is what [`Embed::model`] answers (the caller makes
    /// it unique to these weights).
    pub fn load(dir: &Path, name: &str) -> Result<Self, String> {
        let (info, config) = inspect(dir)?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        // Read into owned tensors (the file is mapped only while they are made).
        let tensors = candle_core::safetensors::load(&weights, &device)
            .map_err(|e| format!("cannot read {}: {e}", weights.display()))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config)
            .map_err(|e| format!("its weights do not fit its config.json ({e})"))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("its tokenizer.json cannot be read ({e})"))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: info.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| format!("its tokenizer cannot truncate ({e})"))?;
        Ok(Self {
            name: name.to_string(),
            model,
            tokenizer,
            dims: info.dims,
            max_tokens: info.max_tokens,
            device,
        })
    }

    fn batch(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| candle_core::Error::Msg(format!("tokenizer: {e}")))?;
        let len = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = encodings.len();
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, e) in encodings.iter().enumerate() {
            for (col, id) in e.get_ids().iter().enumerate() {
                ids[row * len + col] = *id;
                mask[row * len + col] = 1;
            }
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // The mean of the real tokens' states (padding masked out), then unit length.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }

    /// Tokens per text at most (longer texts are cut).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

impl Embed for BertEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        // Similar lengths together: less padding per batch.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for group in order.chunks(BATCH) {
            let batch: Vec<&str> = group.iter().map(|&i| texts[i]).collect();
            let got = self
                .batch(&batch)
                .map_err(|e| format!("the embedding model failed: {e}"))?;
            for (&i, v) in group.iter().zip(got) {
                vectors[i] = Some(v);
            }
        }
        for v in vectors {
            out.push(v.ok_or("the embedding model returned too few vectors")?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn a_tiny_bert_embeds_mean_pooled_unit_vectors() {
        let dir = tempfile::tempdir().unwrap();
        pai_test_support::write_tiny_bert(
            dir.path(),
            &[
                &["car", "automobile"],
                &["engine", "motor"],
                &["banana"],
                &["bread"],
            ],
        );
        let (info, _) = inspect(dir.path()).unwrap();
        assert_eq!(info.dims, pai_test_support::TINY_BERT_DIMS);
        assert_eq!(
            (info.max_tokens, info.layers, info.dtype.as_str()),
            (48, 2, "F32")
        );
        let m = BertEmbedder::load(dir.path(), "tiny@0").unwrap();
        assert_eq!((m.model(), m.dims()), ("tiny@0", 32));

        let v = m
            .embed(&[
                "car engine",
                "automobile motor",
                "banana bread",
                "Car ENGINE",
            ])
            .unwrap();
        assert_eq!(v.len(), 4);
        for x in &v {
            assert_eq!(x.len(), 32);
            assert!((cos(x, x) - 1.0).abs() < 1e-4);
        }
        // Synonyms share embedding rows: same vector; other words: another one.
        assert!(cos(&v[0], &v[1]) > 0.9999);
        assert!(cos(&v[0], &v[2]) < 0.99);
        // The tokenizer lowercases.
        assert!(cos(&v[0], &v[3]) > 0.9999);

        // Padding is masked out of the mean: alone or beside a longer text, the same.
        let alone = m.embed(&["car engine"]).unwrap();
        let padded = m
            .embed(&[
                "car engine",
                "banana bread banana bread car car engine banana",
            ])
            .unwrap();
        assert!(cos(&alone[0], &padded[0]) > 0.9999);
        // More texts than one forward pass takes come back in order.
        let many: Vec<&str> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    "banana"
                } else {
                    "car engine motor"
                }
            })
            .collect();
        let out = m.embed(&many).unwrap();
        assert_eq!(out.len(), 40);
        assert!(cos(&out[1], &out[3]) > 0.9999);
        assert!(cos(&out[0], &out[1]) < 0.99);
    }

    #[test]
    fn what_is_not_a_mean_pooled_bert_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        pai_test_support::write_tiny_bert(dir.path(), &[&["word"]]);
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        let err = inspect(dir.path()).unwrap_err();
        assert!(err.contains("only mean pooling"), "{err}");
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        assert_eq!(inspect(dir.path()).unwrap_err(), "it has no tokenizer.json");
    }
}
