//! Quantised dot products for the decode path, in the weights' own GGUF block layouts
//! (Q4_0, Q4_1, Q8_0), against activations quantised to 8 bits per block of 32.
//!
//! Decoding one token reads every weight once, so its speed is set by how many bytes a
//! weight takes and how fast a block is multiplied. Q4_1 as shipped takes 0.625 bytes a
//! weight where the Q8_0 candle needed takes 1.06, and candle's own Q4_1 kernel is scalar:
//! hence these kernels. The AVX2 versions are chosen at run time, so one binary runs
//! everywhere and uses the vector unit where there is one; the portable versions define
//! what the vector ones must compute, and the tests hold them to it.

// Vector intrinsics need `unsafe`: each use is a `#[target_feature]` function reached only
// after `simd()` saw the features at run time, reading within the slices it was given.
#![allow(unsafe_code)]

/// Weights per block in every layout here.
pub(crate) const QK: usize = 32;

/// The weight layouts with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quant {
    /// f16 scale, 32 4-bit weights stored as `q - 8`.
    Q4_0,
    /// f16 scale and minimum, 32 4-bit weights: `d * q + m`.
    Q4_1,
    /// f16 scale, 32 signed 8-bit weights.
    Q8_0,
}

impl Quant {
    /// Bytes one block of 32 weights takes.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Quant::Q4_0 => 18,
            Quant::Q4_1 => 20,
            Quant::Q8_0 => 34,
        }
    }

    /// Bytes of a block before its weights: the f16 scale, and Q4_1's f16 minimum.
    fn header_bytes(self) -> usize {
        match self {
            Quant::Q4_0 | Quant::Q8_0 => 2,
            Quant::Q4_1 => 4,
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// `x` (finite, not negative) rounded to the nearest f16 value, ties to even.
fn round_to_f16(x: f32) -> f32 {
    const SMALLEST_NORMAL: f32 = 6.103_515_6e-5;
    if x < SMALLEST_NORMAL {
        // Subnormal halves are multiples of 2^-24.
        let unit = f32::powi(2.0, -24);
        return (x / unit).round_ties_even() * unit;
    }
    let bits = x.to_bits();
    let lsb = (bits >> 13) & 1;
    f32::from_bits((bits + 0x0FFF + lsb) & !0x1FFF)
}

/// IEEE half precision to single, exactly (subnormals, infinities and NaN included).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: value = man * 2^-24, exact in f32.
        (0, _) => {
            let v = man as f32 * f32::powi(2.0, -24);
            return if sign == 0 { v } else { -v };
        }
        (0x1F, _) => sign | 0x7F80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Rows of activations quantised to 8 bits per block of 32, like ggml's Q8_1: per block a
/// scale `d`, the scaled sum of its values `s` (what Q4_1's minimum multiplies), and the
/// 32 values.
#[derive(Debug, Default)]
pub(crate) struct Q8Rows {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i8>,
    blocks_per_row: usize,
}

/// One row of [`Q8Rows`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Q8Row<'a> {
    d: &'a [f32],
    s: &'a [f32],
    qs: &'a [i8],
}

impl Q8Rows {
    /// Quantises `xs`, rows of `cols` values each (`cols` a multiple of [`QK`]).
    pub(crate) fn quantize(&mut self, xs: &[f32], cols: usize) {
        let blocks = xs.len() / QK;
        self.blocks_per_row = cols / QK;
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        self.qs.resize(blocks * QK, 0);
        for (b, x) in xs.chunks_exact(QK).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            // ggml (and candle) store this scale as f16; so do we, to compute what they do.
            let d = round_to_f16(d);
            let mut sum = 0i32;
            for (q, v) in self.qs[b * QK..(b + 1) * QK].iter_mut().zip(x) {
                // Rounds half away from zero, like `f32::round`, without its libm call
                // (the baseline x86-64 target has no rounding instruction); |v * id| <= 127,
                // so the cast cannot saturate.
                let r = v * id;
                *q = (r + 0.5f32.copysign(r)) as i8;
                sum += i32::from(*q);
            }
            self.d[b] = d;
            self.s[b] = d * sum as f32;
        }
    }

    pub(crate) fn row(&self, i: usize) -> Q8Row<'_> {
        let (a, b) = (i * self.blocks_per_row, (i + 1) * self.blocks_per_row);
        Q8Row {
            d: &self.d[a..b],
            s: &self.s[a..b],
            qs: &self.qs[a * QK..b * QK],
        }
    }
}

/// A dot product of one weight row (its blocks' bytes) with one activation row.
pub(crate) type Dot = fn(&[u8], Q8Row<'_>) -> f32;

/// Consecutive weight rows (`row_bytes` each) against one activation row, into `out`
/// (one value per row). The vector version runs four rows at a time: each activation
/// block is loaded once, and the four sums do not wait on each other.
pub(crate) type MatVec = fn(&[u8], usize, Q8Row<'_>, &mut [f32]);

/// The fastest matrix-vector kernel for `quant` that this CPU runs.
pub(crate) fn matvec_for(quant: Quant) -> MatVec {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        return match quant {
            Quant::Q4_0 => avx2::q4_0_rows,
            Quant::Q4_1 => avx2::q4_1_rows,
            Quant::Q8_0 => avx2::q8_0_rows,
        };
    }
    match quant {
        Quant::Q4_0 => |w, rb, x, out| portable_rows(portable::q4_0, w, rb, x, out),
        Quant::Q4_1 => |w, rb, x, out| portable_rows(portable::q4_1, w, rb, x, out),
        Quant::Q8_0 => |w, rb, x, out| portable_rows(portable::q8_0, w, rb, x, out),
    }
}

/// The fastest single-row kernel for `quant` that this CPU runs.
#[cfg(test)]
fn dot_for(quant: Quant) -> Dot {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        return match quant {
            Quant::Q4_0 => avx2::q4_0,
            Quant::Q4_1 => avx2::q4_1,
            Quant::Q8_0 => avx2::q8_0,
        };
    }
    portable_dot_for(quant)
}

#[cfg(test)]
fn portable_dot_for(quant: Quant) -> Dot {
    match quant {
        Quant::Q4_0 => portable::q4_0,
        Quant::Q4_1 => portable::q4_1,
        Quant::Q8_0 => portable::q8_0,
    }
}

fn portable_rows(dot: Dot, w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = dot(row, x);
    }
}

/// Rows stored four at a time, block by block, for [`matvec_interleaved_for`]: for each
/// block of a group of four rows, the four rows' f16 scales, then (Q4_1) their four f16
/// minima, then their four runs of quantised weights. The group takes the bytes the four
/// rows took. Why: the vector kernel then converts four scales (and minima) with one
/// instruction each and multiplies them by the activation's scale together, where the
/// row-by-row layout needs a scalar load, conversion and multiply per row and block; that
/// per-block bookkeeping, not the integer products, was most of the kernel's work.
pub(crate) fn interleave(quant: Quant, data: &[u8], row_bytes: usize) -> Vec<u8> {
    let bb = quant.block_bytes();
    let head = quant.header_bytes();
    let mut out = Vec::with_capacity(data.len());
    for group in data.chunks_exact(4 * row_bytes) {
        let rows: Vec<&[u8]> = group.chunks_exact(row_bytes).collect();
        for b in 0..row_bytes / bb {
            for field in (0..head).step_by(2) {
                for row in &rows {
                    out.extend_from_slice(&row[b * bb + field..b * bb + field + 2]);
                }
            }
            for row in &rows {
                out.extend_from_slice(&row[b * bb + head..(b + 1) * bb]);
            }
        }
    }
    out
}

/// Row `r` (0 to 3) of an [`interleave`]d group of four, in the plain layout, into `out`.
pub(crate) fn deinterleave_row(quant: Quant, group: &[u8], r: usize, out: &mut Vec<u8>) {
    let bb = quant.block_bytes();
    let head = quant.header_bytes();
    let qb = bb - head;
    out.clear();
    for blk in group.chunks_exact(4 * bb) {
        for field in (0..head).step_by(2) {
            let at = field * 4 + 2 * r;
            out.extend_from_slice(&blk[at..at + 2]);
        }
        let at = 4 * head + r * qb;
        out.extend_from_slice(&blk[at..at + qb]);
    }
}

/// The kernel for rows in the [`interleave`]d layout, `None` where this CPU has none (the
/// weights then stay as shipped). It takes whole groups of four rows.
pub(crate) fn matvec_interleaved_for(quant: Quant) -> Option<MatVec> {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        return Some(match quant {
            Quant::Q4_0 => avx2::q4_0_groups,
            Quant::Q4_1 => avx2::q4_1_groups,
            Quant::Q8_0 => avx2::q8_0_groups,
        });
    }
    let _ = quant;
    None
}

/// Whether the AVX2 kernels may run here.
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd() -> bool {
    use std::sync::OnceLock;
    static SIMD: OnceLock<bool> = OnceLock::new();
    *SIMD.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn simd() -> bool {
    false
}

/// Weight row `w` as f32 values into `out` (an embedding lookup).
pub(crate) fn dequantize_row(quant: Quant, w: &[u8], out: &mut [f32]) {
    let bb = quant.block_bytes();
    for (blk, out) in w.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        match quant {
            Quant::Q4_0 | Quant::Q4_1 => {
                let (m, qs) = if quant == Quant::Q4_1 {
                    (f16_at(blk, 2), &blk[4..20])
                } else {
                    (-8.0 * d, &blk[2..18])
                };
                for (j, &q) in qs.iter().enumerate() {
                    out[j] = d * f32::from(q & 0x0F) + m;
                    out[j + QK / 2] = d * f32::from(q >> 4) + m;
                }
            }
            Quant::Q8_0 => {
                for (o, &q) in out.iter_mut().zip(&blk[2..34]) {
                    *o = d * f32::from(q as i8);
                }
            }
        }
    }
}

mod portable {
    use super::{Q8Row, QK, f16_at};

    pub(super) fn q4_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = 0f32;
        for (b, blk) in w.chunks_exact(18).enumerate() {
            let y = &x.qs[b * QK..(b + 1) * QK];
            let mut sum = 0i32;
            for (j, &q) in blk[2..18].iter().enumerate() {
                sum += (i32::from(q & 0x0F) - 8) * i32::from(y[j])
                    + (i32::from(q >> 4) - 8) * i32::from(y[j + QK / 2]);
            }
            acc += f16_at(blk, 0) * x.d[b] * sum as f32;
        }
        acc
    }

    pub(super) fn q4_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = 0f32;
        for (b, blk) in w.chunks_exact(20).enumerate() {
            let y = &x.qs[b * QK..(b + 1) * QK];
            let mut sum = 0i32;
            for (j, &q) in blk[4..20].iter().enumerate() {
                sum += i32::from(q & 0x0F) * i32::from(y[j])
                    + i32::from(q >> 4) * i32::from(y[j + QK / 2]);
            }
            acc += f16_at(blk, 0) * x.d[b] * sum as f32 + f16_at(blk, 2) * x.s[b];
        }
        acc
    }

    pub(super) fn q8_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = 0f32;
        for (b, blk) in w.chunks_exact(34).enumerate() {
            let y = &x.qs[b * QK..(b + 1) * QK];
            let sum: i32 = blk[2..34]
                .iter()
                .zip(y)
                .map(|(&q, &y)| i32::from(q as i8) * i32::from(y))
                .sum();
            acc += f16_at(blk, 0) * x.d[b] * sum as f32;
        }
        acc
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! ggml's AVX2 block kernels. Each safe wrapper is handed out by `matvec_for` only when
    //! `simd()` is true, and every pointer read stays inside the block it belongs to:
    //! `w` holds whole blocks and `x` one activation block per weight block.
    use std::arch::x86_64::*;

    use super::{Q8Row, QK};

    #[cfg(test)]
    pub(super) fn q4_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        // SAFETY: see the module comment.
        unsafe { q4_0_impl(w, x) }
    }

    #[cfg(test)]
    pub(super) fn q4_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        // SAFETY: see the module comment.
        unsafe { q4_1_impl(w, x) }
    }

    #[cfg(test)]
    pub(super) fn q8_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        // SAFETY: see the module comment.
        unsafe { q8_0_impl(w, x) }
    }

    pub(super) fn q4_0_rows(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { rows_impl::<18, Q4_0>(w, row_bytes, x, out) }
    }

    pub(super) fn q4_1_rows(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { rows_impl::<20, Q4_1>(w, row_bytes, x, out) }
    }

    pub(super) fn q8_0_rows(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { rows_impl::<34, Q8_0>(w, row_bytes, x, out) }
    }

    /// Rows four at a time, then one at a time; all inlined into one loop.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_impl<const B: usize, const L: u8>(
        w: &[u8],
        row_bytes: usize,
        x: Q8Row<'_>,
        out: &mut [f32],
    ) {
        let n = out.len().min(w.len() / row_bytes.max(1));
        let row = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
        let mut r = 0;
        while r + 4 <= n {
            // SAFETY: each row is `row_bytes` of whole blocks.
            let v = unsafe { x4_impl::<B, L>([row(r), row(r + 1), row(r + 2), row(r + 3)], x) };
            out[r..r + 4].copy_from_slice(&v);
            r += 4;
        }
        while r < n {
            // SAFETY: as above.
            out[r] = unsafe {
                match L {
                    Q4_0 => q4_0_impl(row(r), x),
                    Q4_1 => q4_1_impl(row(r), x),
                    _ => q8_0_impl(row(r), x),
                }
            };
            r += 1;
        }
    }

    pub(super) fn q4_0_groups(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { groups_impl::<18, Q4_0>(w, row_bytes, x, out) }
    }

    pub(super) fn q4_1_groups(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { groups_impl::<20, Q4_1>(w, row_bytes, x, out) }
    }

    pub(super) fn q8_0_groups(w: &[u8], row_bytes: usize, x: Q8Row<'_>, out: &mut [f32]) {
        // SAFETY: see the module comment.
        unsafe { groups_impl::<34, Q8_0>(w, row_bytes, x, out) }
    }

    /// Interleaved groups of four rows (`super::interleave`), one group at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn groups_impl<const B: usize, const L: u8>(
        w: &[u8],
        row_bytes: usize,
        x: Q8Row<'_>,
        out: &mut [f32],
    ) {
        let group = 4 * row_bytes;
        let n = (out.len() / 4).min(w.len() / group.max(1));
        for g in 0..n {
            // SAFETY: the group holds whole interleaved blocks.
            let v = unsafe { group_impl::<B, L>(&w[g * group..(g + 1) * group], x) };
            out[4 * g..4 * g + 4].copy_from_slice(&v);
        }
    }

    /// One interleaved group of four rows. Computes, row for row and operation for
    /// operation, what `x4_impl` computes on the plain layout, so the two agree to the bit:
    /// the same products of scales, the same fused multiply-adds, the minima summed in the
    /// same order.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group_impl<const B: usize, const L: u8>(w: &[u8], x: Q8Row<'_>) -> [f32; 4] {
        let head = if L == Q4_1 { 16 } else { 8 };
        let qb = B - head / 4;
        let blocks = (w.len() / (4 * B)).min(x.d.len());
        let blocks = blocks.min(x.s.len()).min(x.qs.len() / QK);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = _mm_setzero_ps();
        let mut p = w.as_ptr();
        let mut y = x.qs.as_ptr();
        for b in 0..blocks {
            // SAFETY: b < blocks, so `p` points at block b of the group (4 * B bytes: the
            // headers, then four runs of `qb` bytes) and `y` at x's 32 values for it.
            unsafe {
                let xd = _mm_set1_ps(*x.d.get_unchecked(b));
                let scales = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64(p.cast())), xd);
                if L == Q4_1 {
                    let m = _mm_cvtph_ps(_mm_loadl_epi64(p.add(8).cast()));
                    let xs = _mm_set1_ps(*x.s.get_unchecked(b));
                    mins = _mm_add_ps(mins, _mm_mul_ps(m, xs));
                }
                let scales = _mm256_set_m128(scales, scales);
                let yv = _mm256_loadu_si256(y.cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let d = match r {
                        0 => _mm256_permute_ps::<0x00>(scales),
                        1 => _mm256_permute_ps::<0x55>(scales),
                        2 => _mm256_permute_ps::<0xAA>(scales),
                        _ => _mm256_permute_ps::<0xFF>(scales),
                    };
                    let q = p.add(head + r * qb);
                    let sum = match L {
                        Q4_0 => {
                            let q = unpack(_mm_loadu_si128(q.cast()));
                            mul_sum_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(8)), yv)
                        }
                        Q4_1 => mul_sum_us8(unpack(_mm_loadu_si128(q.cast())), yv),
                        _ => mul_sum_i8(_mm256_loadu_si256(q.cast()), yv),
                    };
                    *acc = _mm256_fmadd_ps(d, sum, *acc);
                }
                p = p.add(4 * B);
                y = y.add(QK);
            }
        }
        let mut m = [0f32; 4];
        // SAFETY: `m` holds the four floats stored.
        unsafe { _mm_storeu_ps(m.as_mut_ptr(), mins) };
        [0, 1, 2, 3].map(|r| hsum(acc[r]) + m[r])
    }

    const Q4_0: u8 = 0;
    const Q4_1: u8 = 1;
    const Q8_0: u8 = 2;

    /// Four rows of `B`-byte blocks in layout `L`. Raw pointers walk the blocks: indexing
    /// would check bounds and spill row pointers on every block of this, the hottest loop.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn x4_impl<const B: usize, const L: u8>(w: [&[u8]; 4], x: Q8Row<'_>) -> [f32; 4] {
        let blocks = w.iter().map(|w| w.len() / B).fold(x.d.len(), usize::min);
        let blocks = blocks.min(x.s.len()).min(x.qs.len() / QK);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = [0f32; 4];
        let mut rows = w.map(<[u8]>::as_ptr);
        let mut y = x.qs.as_ptr();
        let half = |p: *const u8| {
            // SAFETY: p points at a block's two-byte f16 field.
            let bits = unsafe { p.cast::<u16>().read_unaligned() };
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
        };
        for b in 0..blocks {
            // SAFETY: b < blocks, so every row has block b at `rows[r]` and x has its
            // 32 values at `y`; the loads below stay inside those blocks.
            unsafe {
                let xd = *x.d.get_unchecked(b);
                let yv = _mm256_loadu_si256(y.cast());
                // Q4_1 blocks open with two f16s (scale, minimum): one conversion for both.
                let mut m = [0f32; 4];
                let mut dw = [0f32; 4];
                for r in 0..4 {
                    if L == Q4_1 {
                        let both = rows[r].cast::<i32>().read_unaligned();
                        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(both));
                        dw[r] = _mm_cvtss_f32(v);
                        m[r] = _mm_cvtss_f32(_mm_movehdup_ps(v));
                    } else {
                        dw[r] = half(rows[r]);
                    }
                }
                for r in 0..4 {
                    let blk = rows[r];
                    let d = _mm256_set1_ps(dw[r] * xd);
                    let sum = match L {
                        Q4_0 => {
                            let q = _mm_loadu_si128(blk.add(2).cast());
                            let q = unpack(q);
                            mul_sum_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(8)), yv)
                        }
                        Q4_1 => {
                            // `m`: the block minima, converted above.
                            mins[r] += m[r] * *x.s.get_unchecked(b);
                            mul_sum_us8(unpack(_mm_loadu_si128(blk.add(4).cast())), yv)
                        }
                        _ => mul_sum_i8(_mm256_loadu_si256(blk.add(2).cast()), yv),
                    };
                    acc[r] = _mm256_fmadd_ps(d, sum, acc[r]);
                    rows[r] = blk.add(B);
                }
                y = y.add(QK);
            }
        }
        [0, 1, 2, 3].map(|r| hsum(acc[r]) + mins[r])
    }

    /// 16 bytes of nibbles as 32 bytes: low nibbles first, then high ones.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack(lo: __m128i) -> __m256i {
        let hi = _mm_srli_epi16(lo, 4);
        _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0F))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale(blk: &[u8], at: usize) -> f32 {
        let bits = i32::from(u16::from_le_bytes([blk[at], blk[at + 1]]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }

    /// 32 nibbles of 16 bytes as bytes: low nibbles first, then high ones (ggml's order).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles(qs: &[u8]) -> __m256i {
        // Checked, so a short slice panics instead of reading past it; where the caller's
        // slice is known to be long enough the compiler drops the check.
        let qs = &qs[..16];
        // SAFETY: `qs` holds exactly the 16 bytes read.
        let lo = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let hi = _mm_srli_epi16(lo, 4);
        _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0F))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load32(y: &[i8]) -> __m256i {
        // Checked, like `nibbles`.
        let y = &y[..32];
        // SAFETY: `y` holds exactly the 32 bytes read.
        unsafe { _mm256_loadu_si256(y.as_ptr().cast()) }
    }

    /// Unsigned × signed bytes, summed in 8 lanes of f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    /// Signed × signed bytes, summed in 8 lanes of f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
        mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    // Each kernel runs blocks in pairs into two accumulators, so that consecutive blocks
    // do not wait on each other's fused multiply-add; iterating zipped blocks keeps bounds
    // checks out of the loop.

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0_impl(w: &[u8], x: Q8Row<'_>) -> f32 {
        const B: usize = 18;
        let eight = _mm256_set1_epi8(8);
        // SAFETY (both loads): a block holds 16 bytes of nibbles after its scale, and x
        // one 32-value block per weight block.
        let block = |acc: __m256, blk: &[u8], xd: f32, xq: &[i8]| unsafe {
            let d = _mm256_set1_ps(scale(blk, 0) * xd);
            let bx = _mm256_sub_epi8(nibbles(&blk[2..]), eight);
            _mm256_fmadd_ps(d, mul_sum_i8(bx, load32(xq)), acc)
        };
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let pairs = w
            .chunks_exact(2 * B)
            .zip(x.d.chunks_exact(2))
            .zip(x.qs.chunks_exact(2 * QK));
        for ((blk, xd), xq) in pairs {
            a0 = block(a0, &blk[..B], xd[0], &xq[..QK]);
            a1 = block(a1, &blk[B..], xd[1], &xq[QK..]);
        }
        let n = w.len() / B;
        if n % 2 == 1 {
            a0 = block(a0, &w[(n - 1) * B..], x.d[n - 1], &x.qs[(n - 1) * QK..]);
        }
        hsum(_mm256_add_ps(a0, a1))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_impl(w: &[u8], x: Q8Row<'_>) -> f32 {
        const B: usize = 20;
        // SAFETY (both loads): a block holds 16 bytes of nibbles after its scale and
        // minimum, and x one 32-value block per weight block.
        let block = |acc: __m256, blk: &[u8], xd: f32, xq: &[i8]| unsafe {
            let d = _mm256_set1_ps(scale(blk, 0) * xd);
            _mm256_fmadd_ps(d, mul_sum_us8(nibbles(&blk[4..]), load32(xq)), acc)
        };
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut m0, mut m1) = (0f32, 0f32);
        let pairs = w
            .chunks_exact(2 * B)
            .zip(x.d.chunks_exact(2))
            .zip(x.s.chunks_exact(2))
            .zip(x.qs.chunks_exact(2 * QK));
        for (((blk, xd), xs), xq) in pairs {
            m0 += scale(blk, 2) * xs[0];
            m1 += scale(blk, B + 2) * xs[1];
            a0 = block(a0, &blk[..B], xd[0], &xq[..QK]);
            a1 = block(a1, &blk[B..], xd[1], &xq[QK..]);
        }
        let n = w.len() / B;
        if n % 2 == 1 {
            let blk = &w[(n - 1) * B..];
            m0 += scale(blk, 2) * x.s[n - 1];
            a0 = block(a0, blk, x.d[n - 1], &x.qs[(n - 1) * QK..]);
        }
        hsum(_mm256_add_ps(a0, a1)) + m0 + m1
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0_impl(w: &[u8], x: Q8Row<'_>) -> f32 {
        const B: usize = 34;
        // SAFETY (both loads): a block holds 32 weights after its scale, and x one
        // 32-value block per weight block.
        let block = |acc: __m256, blk: &[u8], xd: f32, xq: &[i8]| unsafe {
            let d = _mm256_set1_ps(scale(blk, 0) * xd);
            let bx = _mm256_loadu_si256(blk[2..34].as_ptr().cast());
            _mm256_fmadd_ps(d, mul_sum_i8(bx, load32(xq)), acc)
        };
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let pairs = w
            .chunks_exact(2 * B)
            .zip(x.d.chunks_exact(2))
            .zip(x.qs.chunks_exact(2 * QK));
        for ((blk, xd), xq) in pairs {
            a0 = block(a0, &blk[..B], xd[0], &xq[..QK]);
            a1 = block(a1, &blk[B..], xd[1], &xq[QK..]);
        }
        let n = w.len() / B;
        if n % 2 == 1 {
            a0 = block(a0, &w[(n - 1) * B..], x.d[n - 1], &x.qs[(n - 1) * QK..]);
        }
        hsum(_mm256_add_ps(a0, a1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// `rows` × `cols` random weights in candle's encoding of `dtype`, and their values.
    fn weights(dtype: GgmlDType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
        let t = Tensor::from_vec(values(rows * cols, 7), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let exact = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q.data().unwrap().into_owned(), exact)
    }

    const LAYOUTS: [(Quant, GgmlDType); 3] = [
        (Quant::Q4_0, GgmlDType::Q4_0),
        (Quant::Q4_1, GgmlDType::Q4_1),
        (Quant::Q8_0, GgmlDType::Q8_0),
    ];

    #[test]
    fn dots_match_the_dequantised_weights() {
        let (rows, cols) = (8, 256);
        let x = values(cols, 11);
        let mut q8 = Q8Rows::default();
        q8.quantize(&x, cols);
        for (quant, dtype) in LAYOUTS {
            let (data, exact) = weights(dtype, rows, cols);
            let row_bytes = cols / QK * quant.block_bytes();
            for r in 0..rows {
                let w = &data[r * row_bytes..(r + 1) * row_bytes];
                let want: f32 = exact[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| a * b)
                    .sum();
                let mut row = vec![0f32; cols];
                dequantize_row(quant, w, &mut row);
                assert_eq!(row, exact[r * cols..(r + 1) * cols], "{quant:?} row {r}");
                for dot in [portable_dot_for(quant), dot_for(quant)] {
                    let got = dot(w, q8.row(0));
                    // Only the activations' 8-bit rounding separates the two.
                    assert!(
                        (got - want).abs() < 0.05,
                        "{quant:?} row {r}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn vector_kernels_compute_what_the_portable_ones_do() {
        if !simd() {
            return;
        }
        let (rows, cols) = (16, 576);
        let x = values(2 * cols, 5);
        let mut q8 = Q8Rows::default();
        q8.quantize(&x, cols);
        for (quant, dtype) in LAYOUTS {
            let (data, _) = weights(dtype, rows, cols);
            let row_bytes = cols / QK * quant.block_bytes();
            let rows: Vec<&[u8]> = data.chunks_exact(row_bytes).collect();
            for (r, w) in rows.iter().enumerate() {
                for j in 0..2 {
                    let want = portable_dot_for(quant)(w, q8.row(j));
                    let got = dot_for(quant)(w, q8.row(j));
                    // All 16 rows (four at a time), and the last 3 (one at a time).
                    let mut all = [0f32; 16];
                    matvec_for(quant)(&data, row_bytes, q8.row(j), &mut all);
                    let mut last = [0f32; 3];
                    matvec_for(quant)(&data[13 * row_bytes..], row_bytes, q8.row(j), &mut last);
                    let tail = if r >= 13 { last[r - 13] } else { all[r] };
                    for got in [got, all[r], tail] {
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{quant:?} row {r}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The interleaved layout changes where the bytes are, not what is computed: its kernel
    /// gives the row-by-row kernel's results to the bit, and every row can be read back.
    #[test]
    fn interleaved_rows_compute_what_plain_rows_do() {
        if !simd() {
            return;
        }
        let (rows, cols) = (16, 576);
        let x = values(2 * cols, 3);
        let mut q8 = Q8Rows::default();
        q8.quantize(&x, cols);
        for (quant, dtype) in LAYOUTS {
            let (data, _) = weights(dtype, rows, cols);
            let row_bytes = cols / QK * quant.block_bytes();
            let inter = interleave(quant, &data, row_bytes);
            assert_eq!(inter.len(), data.len());
            let mut plain = Vec::new();
            for r in 0..rows {
                let group = &inter[(r - r % 4) * row_bytes..(r - r % 4 + 4) * row_bytes];
                deinterleave_row(quant, group, r % 4, &mut plain);
                assert_eq!(
                    plain,
                    data[r * row_bytes..(r + 1) * row_bytes],
                    "{quant:?} {r}"
                );
            }
            let kernel = matvec_interleaved_for(quant).unwrap();
            for j in 0..2 {
                let (mut want, mut got) = ([0f32; 16], [0f32; 16]);
                matvec_for(quant)(&data, row_bytes, q8.row(j), &mut want);
                kernel(&inter, row_bytes, q8.row(j), &mut got);
                assert_eq!(
                    got.map(f32::to_bits),
                    want.map(f32::to_bits),
                    "{quant:?} activation row {j}"
                );
                // Eight rows: two groups, as a work item of the matrix product gets them.
                let mut part = [0f32; 8];
                kernel(&inter[8 * row_bytes..], row_bytes, q8.row(j), &mut part);
                let want: Vec<u32> = want[8..].iter().map(|v| v.to_bits()).collect();
                assert_eq!(part.map(f32::to_bits).to_vec(), want);
            }
        }
    }

    #[test]
    fn half_floats_convert_exactly() {
        for (bits, want) in [
            (0x3C00u16, 1.0f32),
            (0xC000, -2.0),
            (0x0000, 0.0),
            (0x0001, 5.960_464_5e-8),
            (0x8001, -5.960_464_5e-8),
            (0x7BFF, 65504.0),
            (0x7C00, f32::INFINITY),
        ] {
            assert_eq!(f16_to_f32(bits), want, "{bits:#06x}");
        }
        assert!(f16_to_f32(0x7E00).is_nan());
    }
}
