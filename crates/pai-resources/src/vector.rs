//! Vectors for hybrid search: what an embedding model is to the store ([`Embed`]), how a
//! vector is kept (int8, one scale per vector: 4 + d bytes instead of 4·d), how two are
//! compared (an integer dot product), how the best of many are kept while scanning, and
//! how the BM25 ranking and the vector ranking become one (reciprocal rank fusion).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

/// An embedding model as the store uses it: texts in, one L2-normalised vector each out.
/// The store computes vectors at import and for each query; it never loads the model
/// itself (pai-core hands one in, built from an installed model).
pub trait Embed: Send + Sync + fmt::Debug {
    /// Names the model and its weights; vectors made by another model are never
    /// compared with this one's.
    fn model(&self) -> &str;
    /// Length of every vector.
    fn dims(&self) -> usize;
    /// One vector per text, each of length [`Embed::dims`] and unit length.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// The `k` of reciprocal rank fusion: a document ranked `r` (1-based) in a list adds
/// `1 / (k + r)`. 60 is the value of Cormack et al. (2009), used by most systems since.
pub const RRF_K: f64 = 60.0;

/// `v` as stored: the scale (little-endian f32), then each component as `round(x /
/// scale)` in -127..=127, the scale chosen so that the largest component maps to ±127.
pub fn quantize(v: &[f32]) -> Vec<u8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(4 + v.len());
    out.extend_from_slice(&scale.to_le_bytes());
    out.extend(
        v.iter()
            .map(|x| ((x / scale).round().clamp(-127.0, 127.0) as i8) as u8),
    );
    out
}

/// The scale and components of a stored vector, if `blob` is one of `dims` components.
pub fn parts(blob: &[u8], dims: usize) -> Option<(f32, &[u8])> {
    if blob.len() != 4 + dims {
        return None;
    }
    let (head, body) = blob.split_at(4);
    let scale = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    Some((scale, body))
}

/// The integer dot product of two int8 vectors (as stored, reinterpreted as `i8`).
pub fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x as i8) * i32::from(y as i8))
        .sum()
}

/// The cosine of two stored unit vectors, from their int8 forms (`None` when either is
/// not a vector of `dims` components).
pub fn cosine(a: &[u8], b: &[u8], dims: usize) -> Option<f32> {
    let (sa, qa) = parts(a, dims)?;
    let (sb, qb) = parts(b, dims)?;
    Some(sa * sb * dot_i8(qa, qb) as f32)
}

/// Keeps the `k` best `(id, score)` pairs seen, without holding the rest.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<(Score, i64)>>,
}

/// A score that orders (NaN last).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    /// An empty list keeping at most `k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers one pair.
    pub fn push(&mut self, id: i64, score: f32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Reverse((Score(score), id)));
        } else if let Some(Reverse((worst, _))) = self.heap.peek()
            && Score(score) > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse((Score(score), id)));
        }
    }

    /// The pairs kept, best first (ties: lower id first).
    pub fn into_sorted(self) -> Vec<(i64, f32)> {
        let mut v: Vec<(i64, f32)> = self
            .heap
            .into_iter()
            .map(|Reverse((s, id))| (id, s.0))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// Reciprocal rank fusion of rankings (each best first): every id gets the sum over the
/// lists it is in of `1 / (k + rank)`, rank counted from 1. Best first; ties keep the
/// order in which ids were first met, list by list.
pub fn rrf(lists: &[&[i64]], k: f64) -> Vec<(i64, f64)> {
    let mut score: HashMap<i64, (f64, usize)> = HashMap::new();
    let mut order = 0usize;
    for list in lists {
        for (i, id) in list.iter().enumerate() {
            let e = score.entry(*id).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            e.0 += 1.0 / (k + (i + 1) as f64);
        }
    }
    let mut out: Vec<(i64, f64, usize)> =
        score.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(id, s, _)| (id, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantised_vectors_keep_the_cosine_within_a_percent() {
        let a = unit(&[0.3, -0.2, 0.9, 0.05, -0.4, 0.11]);
        let b = unit(&[0.25, -0.1, 0.8, -0.3, -0.5, 0.0]);
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (qa, qb) = (quantize(&a), quantize(&b));
        assert_eq!(qa.len(), 4 + 6);
        let approx = cosine(&qa, &qb, 6).unwrap();
        assert!((approx - exact).abs() < 0.01, "{approx} vs {exact}");
        // A vector with itself: 1.
        assert!((cosine(&qa, &qa, 6).unwrap() - 1.0).abs() < 0.01);
        // The largest component maps to ±127 and its sign is kept.
        let (scale, body) = parts(&qa, 6).unwrap();
        assert_eq!(body[2] as i8, 127);
        assert_eq!(body[4] as i8, (a[4] / scale).round() as i8);
        assert!((body[4] as i8) < 0);
        assert!((scale - a[2] / 127.0).abs() < 1e-7);
        // Wrong lengths are not vectors.
        assert_eq!(cosine(&qa, &qb, 5), None);
        // The zero vector does not divide by zero.
        assert_eq!(
            cosine(&quantize(&[0.0; 3]), &quantize(&[0.0; 3]), 3),
            Some(0.0)
        );
    }

    #[test]
    fn the_integer_dot_product_is_signed() {
        let a = [127u8, (-127i8) as u8, 2, 0];
        let b = [1u8, 1, (-3i8) as u8, 100];
        assert_eq!(dot_i8(&a, &b), 127 - 127 - 6);
    }

    #[test]
    fn top_k_keeps_the_best_only() {
        let mut top = TopK::new(3);
        for (id, s) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, -1.0), (6, 0.9)] {
            top.push(id, s);
        }
        assert_eq!(top.into_sorted(), vec![(2, 0.9), (6, 0.9), (4, 0.7)]);
        let mut none = TopK::new(0);
        none.push(1, 1.0);
        assert_eq!(none.into_sorted(), vec![]);
    }

    #[test]
    fn rrf_adds_reciprocal_ranks() {
        // bm25: 10, 20, 30; vectors: 30, 40, 10.
        let fused = rrf(&[&[10, 20, 30], &[30, 40, 10]], 60.0);
        let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
        // 10: 1/61 + 1/63; 30: 1/63 + 1/61 (a tie, 10 was met first); 20: 1/62; 40: 1/62.
        assert_eq!(ids, vec![10, 30, 20, 40]);
        let s10 = 1.0 / 61.0 + 1.0 / 63.0;
        assert!((fused[0].1 - s10).abs() < 1e-12);
        assert!((fused[2].1 - 1.0 / 62.0).abs() < 1e-12);
        // A document first in one list only beats one second and third in both? No:
        // 1/61 < 1/62 + 1/63.
        let fused = rrf(&[&[1, 2, 3], &[4, 2, 3]], 60.0);
        assert_eq!(fused[0].0, 2);
        assert_eq!(rrf(&[], 60.0), vec![]);
    }
}
