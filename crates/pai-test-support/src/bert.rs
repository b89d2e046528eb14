#![allow(clippy::expect_used)] // test fixture: a failure to build it is a failed test
//! A tiny BERT sentence-embedding model written by the test itself (no download): a
//! WordPiece `tokenizer.json`, a BERT `config.json` (hidden size 32, 2 layers) and
//! `model.safetensors` with seeded random weights, plus the sentence-transformers pooling
//! files. Words given in one group share one embedding row, so texts that differ only by
//! such "synonyms" get identical vectors — a deliberate semantic neighbourhood that no
//! word overlap reveals.

use std::path::Path;

use serde_json::{Map, Value, json};

/// Hidden size of the tiny model (its vector length).
pub const TINY_BERT_DIMS: usize = 32;

const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const LAYERS: usize = 2;
const INTERMEDIATE: usize = 64;
const MAX_POSITIONS: usize = 64;

/// Deterministic numbers in (-1, 1) (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn fill(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Writes the tiny model into `dir` (created): every word of `groups` is in its
/// vocabulary, the words of one group sharing an embedding row; other words are `[UNK]`.
pub fn write_tiny_bert(dir: &Path, groups: &[&[&str]]) {
    std::fs::create_dir_all(dir.join("1_Pooling")).expect("model directory");
    let mut vocab = Map::new();
    for (i, t) in SPECIAL.iter().enumerate() {
        vocab.insert((*t).into(), json!(i));
    }
    // Embedding rows: one per special token, one per group.
    let mut row_of = Vec::new();
    for (g, words) in groups.iter().enumerate() {
        for w in *words {
            let id = vocab.len();
            vocab.insert(w.to_lowercase(), json!(id));
            row_of.push(SPECIAL.len() + g);
        }
    }
    let vocab_size = vocab.len();
    let h = TINY_BERT_DIMS;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rows: Vec<Vec<f32>> = (0..SPECIAL.len() + groups.len())
        .map(|_| rng.fill(h, 1.0))
        .collect();
    let mut word = Vec::with_capacity(vocab_size * h);
    for row in rows.iter().take(SPECIAL.len()) {
        word.extend_from_slice(row);
    }
    for r in &row_of {
        word.extend_from_slice(&rows[*r]);
    }

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![vocab_size, h],
            word,
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![MAX_POSITIONS, h],
            rng.fill(MAX_POSITIONS * h, 0.1),
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, h],
            rng.fill(2 * h, 0.1),
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h], vec![1.0; h]),
        ("embeddings.LayerNorm.bias".into(), vec![h], vec![0.0; h]),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let mut lin = |name: String, out: usize, inp: usize, rng: &mut Rng| {
            tensors.push((
                format!("{name}.weight"),
                vec![out, inp],
                rng.fill(out * inp, 0.2),
            ));
            tensors.push((format!("{name}.bias"), vec![out], rng.fill(out, 0.02)));
        };
        lin(format!("{p}.attention.self.query"), h, h, &mut rng);
        lin(format!("{p}.attention.self.key"), h, h, &mut rng);
        lin(format!("{p}.attention.self.value"), h, h, &mut rng);
        lin(format!("{p}.attention.output.dense"), h, h, &mut rng);
        lin(format!("{p}.intermediate.dense"), INTERMEDIATE, h, &mut rng);
        lin(format!("{p}.output.dense"), h, INTERMEDIATE, &mut rng);
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            tensors.push((format!("{p}.{norm}.weight"), vec![h], vec![1.0; h]));
            tensors.push((format!("{p}.{norm}.bias"), vec![h], vec![0.0; h]));
        }
    }
    std::fs::write(dir.join("model.safetensors"), safetensors(&tensors)).expect("weights");

    let config = json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": h,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute"
    });
    write_json(&dir.join("config.json"), &config);
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": h,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false
        }),
    );
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": 48, "do_lower_case": false}),
    );
    write_json(&dir.join("tokenizer.json"), &tokenizer(vocab));
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

/// A BERT WordPiece tokenizer (lowercasing, `[CLS] … [SEP]`) over `vocab`.
fn tokenizer(vocab: Map<String, Value>) -> Value {
    let added: Vec<Value> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// The safetensors encoding of f32 tensors: 8 bytes of header length, the JSON header
/// (padded with spaces to a multiple of 8), then the data, little-endian.
fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = Map::new();
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        let end = offset + data.len() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("header");
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, data) in tensors {
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}
