//! A llama-architecture decoder that runs the GGUF's weights in their own block layouts.
//!
//! Why not candle's `quantized_llama`: per generated token it re-concatenates the whole KV
//! cache and repeats it for every query head, runs some twenty tensor operations per layer
//! (each allocating), dispatches seven matmuls per layer to the thread pool, and (lacking a
//! fast Q4_1 kernel) needed the weights widened to Q8_0, which reads 1.7× the bytes per
//! token; it also kept the embedding table as f32 (113 MB for SmolLM2). Here a token costs
//! four pool dispatches per layer (q/k/v and gate/up share one), the KV cache grows in
//! place, attention reads it where it lies, and the embedding and output matrix stay
//! quantised. Files it does not cover (other layouts, mixtures of experts, partial rotary
//! embeddings) keep running on candle.

use std::io::{Read, Seek};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result};

use crate::kernels::{self, MatVec, Q8Rows, QK, Quant};

/// A weight matrix, `rows` × `cols`, one row of blocks after another, or, where the CPU
/// has a kernel for it and `rows` is a multiple of four, in groups of four rows
/// interleaved block by block (`kernels::interleave`).
struct Matrix {
    quant: Quant,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
    interleaved: bool,
    matvec: MatVec,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("quant", &self.quant)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl Matrix {
    fn row_bytes(&self) -> usize {
        self.cols / QK * self.quant.block_bytes()
    }

    /// Row `r` as f32 values (an embedding lookup); `plain` is room for the row's bytes.
    fn dequantize_row(&self, r: usize, plain: &mut Vec<u8>, out: &mut [f32]) {
        if self.interleaved {
            let group = self.rows_bytes(r - r % 4, 4);
            kernels::deinterleave_row(self.quant, group, r % 4, plain);
            kernels::dequantize_row(self.quant, plain, out);
        } else {
            kernels::dequantize_row(self.quant, self.rows_bytes(r, 1), out);
        }
    }

    /// Rows `r..r + n`, one after another (whole groups of four when interleaved: `r` and
    /// `n` are then multiples of four).
    fn rows_bytes(&self, r: usize, n: usize) -> &[u8] {
        let b = self.row_bytes();
        &self.data[r * b..(r + n) * b]
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    q: Matrix,
    k: Matrix,
    v: Matrix,
    o: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
    /// Keys and values of every position so far, `[position][kv head][head_dim]`.
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Buffers reused from token to token, so decoding allocates nothing but the logits.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    q8: Q8Rows,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    hidden: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    shared: Vec<AtomicU32>,
    plain_row: Vec<u8>,
}

/// A loaded llama model and its KV cache: one conversation at a time.
#[derive(Debug)]
pub struct Llama {
    embeddings: Matrix,
    /// `None` when the file ties the output matrix to the embeddings (SmolLM2 does).
    output: Option<Matrix>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    inv_freq: Vec<f32>,
    /// Positions held in the KV cache.
    len: usize,
    scratch: Scratch,
}

fn meta_u32(content: &Content, key: &str) -> Option<usize> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
}

fn meta_f32(content: &Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Layouts kept as they are, and those widened to Q8_0 at load (no kernel of their own).
fn layout(dtype: GgmlDType) -> Option<Quant> {
    match dtype {
        GgmlDType::Q4_0 => Some(Quant::Q4_0),
        GgmlDType::Q4_1 => Some(Quant::Q4_1),
        GgmlDType::Q8_0 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => Some(Quant::Q8_0),
        _ => None,
    }
}

const LAYER_MATRICES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl Llama {
    /// The model in `content`, or `None` when this decoder does not cover the file (which
    /// then runs on candle).
    pub fn load<R: Read + Seek>(content: &Content, reader: &mut R) -> Result<Option<Self>> {
        let (Some(n_layer), Some(hidden), Some(n_head)) = (
            meta_u32(content, "llama.block_count"),
            meta_u32(content, "llama.embedding_length"),
            meta_u32(content, "llama.attention.head_count"),
        ) else {
            return Ok(None);
        };
        let n_kv_head = meta_u32(content, "llama.attention.head_count_kv").unwrap_or(n_head);
        let experts = meta_u32(content, "llama.expert_count").unwrap_or(0);
        if n_head == 0 || n_kv_head == 0 || hidden % n_head != 0 || n_head % n_kv_head != 0 {
            return Ok(None);
        }
        let head_dim = hidden / n_head;
        let rope_dim = meta_u32(content, "llama.rope.dimension_count").unwrap_or(head_dim);
        if experts > 1 || rope_dim != head_dim || head_dim % 2 != 0 {
            return Ok(None);
        }
        let mut names = vec!["token_embd.weight".to_string()];
        if content.tensor_infos.contains_key("output.weight") {
            names.push("output.weight".into());
        }
        for l in 0..n_layer {
            names.extend(LAYER_MATRICES.iter().map(|m| format!("blk.{l}.{m}.weight")));
        }
        let covered = names.iter().all(|n| {
            content.tensor_infos.get(n).is_some_and(|t| {
                layout(t.ggml_dtype).is_some()
                    && t.shape.dims().len() == 2
                    && t.shape.dims()[1] % QK == 0
            })
        });
        if !covered {
            return Ok(None);
        }

        let eps = meta_f32(content, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5);
        let base = meta_f32(content, "llama.rope.freq_base").unwrap_or(10_000.0);
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let embeddings = matrix(content, reader, "token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(matrix(content, reader, "output.weight")?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(n_layer);
        for l in 0..n_layer {
            let name = |n: &str| format!("blk.{l}.{n}.weight");
            layers.push(Layer {
                q: matrix(content, reader, &name("attn_q"))?,
                k: matrix(content, reader, &name("attn_k"))?,
                v: matrix(content, reader, &name("attn_v"))?,
                o: matrix(content, reader, &name("attn_output"))?,
                gate: matrix(content, reader, &name("ffn_gate"))?,
                up: matrix(content, reader, &name("ffn_up"))?,
                down: matrix(content, reader, &name("ffn_down"))?,
                attn_norm: vector(content, reader, &name("attn_norm"))?,
                ffn_norm: vector(content, reader, &name("ffn_norm"))?,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        let model = Self {
            embeddings,
            output,
            norm: vector(content, reader, "output_norm.weight")?,
            layers,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            inv_freq,
            len: 0,
            scratch: Scratch::default(),
        };
        model.check_shapes(hidden)?;
        Ok(Some(model))
    }

    /// Every matrix must fit the next: a file whose shapes disagree with its metadata is
    /// refused at load, not met with a panic mid-answer.
    fn check_shapes(&self, hidden: usize) -> Result<()> {
        let kv = self.n_kv_head * self.head_dim;
        let out = self.output.as_ref().unwrap_or(&self.embeddings);
        let mut ok = self.embeddings.cols == hidden && out.cols == hidden;
        ok &= self.norm.len() == hidden;
        for l in &self.layers {
            let ffn = l.gate.rows;
            ok &= [&l.q, &l.k, &l.v, &l.gate, &l.up]
                .iter()
                .all(|m| m.cols == hidden);
            ok &= l.q.rows == hidden && l.k.rows == kv && l.v.rows == kv;
            ok &= l.o.rows == hidden && l.o.cols == hidden;
            ok &= l.up.rows == ffn && l.down.rows == hidden && l.down.cols == ffn;
            ok &= l.attn_norm.len() == hidden && l.ffn_norm.len() == hidden;
        }
        if ok {
            Ok(())
        } else {
            Err(candle_core::Error::Msg(
                "its tensor shapes do not match its llama metadata".into(),
            ))
        }
    }

    /// Forgets the cached positions, for a new conversation.
    pub fn clear(&mut self) {
        self.len = 0;
        for l in &mut self.layers {
            l.keys.clear();
            l.values.clear();
        }
    }

    /// Logits for the token after `tokens`, which continue the sequence at `position`.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        if position > self.len {
            return Err(candle_core::Error::Msg(format!(
                "position {position} is past the {} cached",
                self.len
            )));
        }
        let m = tokens.len();
        if m == 0 {
            return Err(candle_core::Error::Msg("no tokens to run".into()));
        }
        let hidden = self.embeddings.cols;
        let hd = self.head_dim;
        let kv = self.n_kv_head * hd;
        let s = &mut self.scratch;

        s.x.resize(m * hidden, 0.0);
        for (j, &t) in tokens.iter().enumerate() {
            let t = t as usize;
            if t >= self.embeddings.rows {
                return Err(candle_core::Error::Msg(format!(
                    "token {t} is not in the vocabulary"
                )));
            }
            let out = &mut s.x[j * hidden..(j + 1) * hidden];
            self.embeddings.dequantize_row(t, &mut s.plain_row, out);
        }
        s.cos.resize(m * hd / 2, 0.0);
        s.sin.resize(m * hd / 2, 0.0);
        for j in 0..m {
            let p = (position + j) as f32;
            for (i, f) in self.inv_freq.iter().enumerate() {
                let (sin, cos) = (p * f).sin_cos();
                s.cos[j * hd / 2 + i] = cos;
                s.sin[j * hd / 2 + i] = sin;
            }
        }

        for l in &mut self.layers {
            l.keys.truncate(position * kv);
            l.values.truncate(position * kv);

            rms_norm(&s.x, &l.attn_norm, self.eps, &mut s.normed);
            s.q8.quantize(&s.normed, hidden);
            let width = hidden + 2 * kv;
            matmul(&mut s.shared, &[&l.q, &l.k, &l.v], &s.q8, m, &mut s.qkv);
            for j in 0..m {
                let row = &mut s.qkv[j * width..(j + 1) * width];
                let (cos, sin) = (
                    &s.cos[j * hd / 2..(j + 1) * hd / 2],
                    &s.sin[j * hd / 2..(j + 1) * hd / 2],
                );
                for head in row[..hidden + kv].chunks_exact_mut(hd) {
                    rope(head, cos, sin);
                }
                l.keys.extend_from_slice(&row[hidden..hidden + kv]);
                l.values.extend_from_slice(&row[hidden + kv..]);
            }

            s.attn.resize(m * hidden, 0.0);
            let group = self.n_head / self.n_kv_head;
            let scale = 1.0 / (hd as f32).sqrt();
            // One work item per (token, head), on the pool: each owns its slice of `attn`.
            let outputs: Vec<Mutex<&mut [f32]>> = s.attn.chunks_mut(hd).map(Mutex::new).collect();
            let (qkv, keys, values) = (&s.qkv, &l.keys, &l.values);
            let n_head = self.n_head;
            let attend = |items: Range<usize>| {
                let mut scores = Vec::new();
                for item in items {
                    let (j, h) = (item / n_head, item % n_head);
                    scores.resize(position + j + 1, 0.0);
                    let q = &qkv[j * width + h * hd..j * width + (h + 1) * hd];
                    let g = (h / group) * hd;
                    for (t, score) in scores.iter_mut().enumerate() {
                        *score = dot(q, &keys[t * kv + g..t * kv + g + hd]) * scale;
                    }
                    softmax(&mut scores);
                    let mut out = outputs[item]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    out.fill(0.0);
                    for (t, &p) in scores.iter().enumerate() {
                        axpy(p, &values[t * kv + g..t * kv + g + hd], &mut out);
                    }
                }
            };
            candle_core::utils::barrier_pool().execute_chunked(m * n_head, attend);
            drop(outputs);
            s.q8.quantize(&s.attn, hidden);
            matmul(&mut s.shared, &[&l.o], &s.q8, m, &mut s.proj);
            add(&mut s.x, &s.proj);

            rms_norm(&s.x, &l.ffn_norm, self.eps, &mut s.normed);
            s.q8.quantize(&s.normed, hidden);
            let ffn = l.gate.rows;
            matmul(&mut s.shared, &[&l.gate, &l.up], &s.q8, m, &mut s.gate_up);
            s.hidden.resize(m * ffn, 0.0);
            for (gu, h) in s
                .gate_up
                .chunks_exact(2 * ffn)
                .zip(s.hidden.chunks_exact_mut(ffn))
            {
                let (gate, up) = gu.split_at(ffn);
                for ((h, &g), &u) in h.iter_mut().zip(gate).zip(up) {
                    *h = g / (1.0 + (-g).exp()) * u;
                }
            }
            s.q8.quantize(&s.hidden, ffn);
            matmul(&mut s.shared, &[&l.down], &s.q8, m, &mut s.proj);
            add(&mut s.x, &s.proj);
        }
        self.len = position + m;

        let last = &s.x[(m - 1) * hidden..];
        rms_norm(last, &self.norm, self.eps, &mut s.normed);
        s.q8.quantize(&s.normed, hidden);
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        let mut logits = Vec::new();
        matmul(&mut s.shared, &[output], &s.q8, 1, &mut logits);
        Ok(logits)
    }
}

/// Reads the weight matrix `name`, widening layouts without a kernel to Q8_0.
fn matrix<R: Read + Seek>(content: &Content, reader: &mut R, name: &str) -> Result<Matrix> {
    let t = content.tensor(reader, name, &Device::Cpu)?;
    let (rows, cols) = t.shape().dims2()?;
    let Some(quant) = layout(t.dtype()) else {
        return Err(candle_core::Error::Msg(format!(
            "{name} is stored as {:?}",
            t.dtype()
        )));
    };
    let data = if t.dtype() == GgmlDType::Q5_0 || t.dtype() == GgmlDType::Q5_1 {
        let wide = QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?;
        wide.data()?.into_owned()
    } else {
        t.data()?.into_owned()
    };
    if data.len() != rows * cols / QK * quant.block_bytes() {
        return Err(candle_core::Error::Msg(format!(
            "{name} has the wrong size"
        )));
    }
    let row_bytes = cols / QK * quant.block_bytes();
    let interleaved = kernels::matvec_interleaved_for(quant).filter(|_| rows % 4 == 0);
    Ok(match interleaved {
        Some(matvec) => Matrix {
            quant,
            rows,
            cols,
            data: kernels::interleave(quant, &data, row_bytes),
            interleaved: true,
            matvec,
        },
        None => Matrix {
            quant,
            rows,
            cols,
            data,
            interleaved: false,
            matvec: kernels::matvec_for(quant),
        },
    })
}

fn vector<R: Read + Seek>(content: &Content, reader: &mut R, name: &str) -> Result<Vec<f32>> {
    content
        .tensor(reader, name, &Device::Cpu)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()
}

/// Weight rows given to a worker at a time: enough to amortise taking them, few enough
/// that a late thread's share can be picked up by the others.
const ROWS_PER_ITEM: usize = 32;

/// `out[j][r]` = row `r` of the stacked `matrices` · activation row `j`, on candle's
/// worker pool (so `[local] threads` / `CANDLE_NUM_THREADS` apply). Several matrices that
/// read the same input go in one dispatch. Workers write through `shared`, whose elements
/// each belong to exactly one work item.
fn matmul(
    shared: &mut Vec<AtomicU32>,
    matrices: &[&Matrix],
    x: &Q8Rows,
    m: usize,
    out: &mut Vec<f32>,
) {
    let total: usize = matrices.iter().map(|w| w.rows).sum();
    if shared.len() < m * total {
        shared.resize_with(m * total, || AtomicU32::new(0));
    }
    let shared_ref = &shared[..m * total];
    let store = |j: usize, r: usize, v: f32| {
        shared_ref[j * total + r].store(v.to_bits(), Ordering::Relaxed);
    };
    // Items never straddle two matrices, and start at a multiple of ROWS_PER_ITEM within
    // theirs, so an interleaved matrix is always handed whole groups of four rows.
    let items: usize = matrices
        .iter()
        .map(|w| w.rows.div_ceil(ROWS_PER_ITEM))
        .sum();
    let work = |items: Range<usize>| {
        let mut buf = [0f32; ROWS_PER_ITEM];
        for item in items {
            let (mut item_in, mut offset) = (item, 0);
            let mut w = matrices[0];
            for next in matrices {
                w = next;
                let own = next.rows.div_ceil(ROWS_PER_ITEM);
                if item_in < own {
                    break;
                }
                item_in -= own;
                offset += next.rows;
            }
            let local = item_in * ROWS_PER_ITEM;
            let n = ROWS_PER_ITEM.min(w.rows - local);
            let rows = w.rows_bytes(local, n);
            for j in 0..m {
                (w.matvec)(rows, w.row_bytes(), x.row(j), &mut buf[..n]);
                for (i, v) in buf[..n].iter().enumerate() {
                    store(j, offset + local + i, *v);
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(items, work);
    out.clear();
    // The pool has joined its workers, which makes their stores visible here.
    out.extend(
        shared_ref
            .iter()
            .map(|v| f32::from_bits(v.load(Ordering::Relaxed))),
    );
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    for (x, out) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let mean = dot(x, x) / w.len() as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
            *o = x * scale * w;
        }
    }
}

/// Rotary position embedding, pairs of neighbours (GGUF llama's layout).
fn rope(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

fn softmax(xs: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
}

/// f32 dot product in eight independent sums, which the compiler keeps in vector lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}
