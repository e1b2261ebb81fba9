//! The CPU row operations (softmax, layer norm, attention, activations, bf16 rounding,
//! int8 activation codes), written once as plain loops over slices; the per-value functions
//! they apply are in `math.rs`, the matrix-product tiles in `tile.rs`.
//!
//! Every function here is `#[inline(always)]` and compiled into each level's
//! `#[target_feature]` wrapper (see `mod.rs`), where the compiler vectorises it for that
//! instruction set: 512-bit registers at `avx512`, 256-bit at `avx2`, 128-bit at `neon` and at
//! the portable baseline. Fixed-size arrays of [`LANES`] values stand in for vector registers,
//! so reductions keep several partial sums (which float addition needs to vectorise) and
//! micro-kernel accumulators stay in registers. All indexing is checked: bounds that the
//! results depend on hold in release builds too.

pub(super) use super::attention::{attend, softmax};
pub use super::math::LANES;
use super::math::{bf16_bits, exp, gelu, sum_lanes, tanh, MulAdd};

/// `out[i] += v[i]`.
#[inline(always)]
pub(super) fn add_assign<M: MulAdd>(out: &mut [f32], v: &[f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += *x;
    }
}

/// Sum of a row, with [`LANES`] partial sums.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            acc[j] += c[j];
        }
    }
    chunks.remainder().iter().sum::<f32>() + sum_lanes(acc)
}

/// `x = layer_norm(x + residual) * weight + bias` over one row; mean and variance in two
/// passes, as PyTorch computes them.
#[inline(always)]
pub(super) fn add_layer_norm<M: MulAdd>(
    x: &mut [f32],
    residual: Option<&[f32]>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    if let Some(r) = residual {
        add_assign::<M>(x, r);
    }
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut var = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            let d = c[j] - mean;
            var[j] = M::mul_add(d, d, var[j]);
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    let inv = 1.0 / ((sum_lanes(var) + tail) / n + eps).sqrt();
    for ((v, w), b) in x.iter_mut().zip(weight).zip(bias) {
        *v = M::mul_add((*v - mean) * inv, *w, *b);
    }
}

/// One query's attention scores: `out[t] = scale * sum_d q[d] kt[d * stride + t]` for every
/// `t < out.len()`, with the keys stored transposed (`[q.len()][stride]`, `stride` a multiple of
/// [`LANES`] at least `out.len()`, zero-padded) so that scores accumulate [`LANES`] at a time.
/// Up to four blocks of [`LANES`] accumulate together: one block alone is a single chain of
/// dependent multiply-adds, which runs at a quarter of the rate (measured: these row operations
/// took twice the time of the earlier hand-written ones).
#[inline(always)]
pub(super) fn scores<M: MulAdd>(q: &[f32], kt: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let len = out.len();
    assert!(stride.is_multiple_of(LANES) && stride >= len && kt.len() >= q.len() * stride);
    let mut t0 = 0;
    while t0 < len {
        // Whole blocks, within `stride` because it is a multiple of LANES at least `len`.
        let blocks = (len - t0).div_ceil(LANES).min(4);
        match blocks {
            1 => scores_block::<M, LANES>(q, kt, stride, t0, scale, out),
            2 => scores_block::<M, { 2 * LANES }>(q, kt, stride, t0, scale, out),
            3 => scores_block::<M, { 3 * LANES }>(q, kt, stride, t0, scale, out),
            _ => scores_block::<M, { 4 * LANES }>(q, kt, stride, t0, scale, out),
        }
        t0 += blocks * LANES;
    }
}

/// `W` scores from `t0` (see [`scores`]), `t0 + W <= stride`.
#[inline(always)]
fn scores_block<M: MulAdd, const W: usize>(
    q: &[f32],
    kt: &[f32],
    stride: usize,
    t0: usize,
    scale: f32,
    out: &mut [f32],
) {
    let mut acc = accumulate::<M, W>(q, kt, stride, t0);
    for a in acc.iter_mut() {
        *a *= scale;
    }
    // The last block may reach into the zero padding, which `out` does not hold.
    match out.get_mut(t0..t0 + W) {
        Some(full) => full.copy_from_slice(&acc),
        None => {
            let rest = &mut out[t0..];
            let n = rest.len();
            rest.copy_from_slice(&acc[..n]);
        }
    }
}

/// `sum_i c[i] rows[i * stride + offset + j]` for `j < W`: the loop of both attention steps,
/// `W` independent accumulators wide.
#[inline(always)]
fn accumulate<M: MulAdd, const W: usize>(
    c: &[f32],
    rows: &[f32],
    stride: usize,
    offset: usize,
) -> [f32; W] {
    let mut acc = [0f32; W];
    for (i, &ci) in c.iter().enumerate() {
        let row: &[f32; W] = rows[i * stride + offset..][..W]
            .try_into()
            .expect("W values");
        for j in 0..W {
            acc[j] = M::mul_add(ci, row[j], acc[j]);
        }
    }
    acc
}

/// `out[d] = sum_t p[t] v[t * stride + d]`: attention weights applied to value rows `stride`
/// apart (inside the fused QKV rows), up to four blocks of [`LANES`] outputs at a time (see
/// [`scores`]).
#[inline(always)]
pub(super) fn weighted_sum<M: MulAdd>(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    if !p.is_empty() {
        // Every row read below exists.
        assert!(v.len() >= (p.len() - 1) * stride + hd);
    }
    let mut d0 = 0;
    while hd - d0 >= LANES {
        let blocks = ((hd - d0) / LANES).min(4);
        match blocks {
            1 => weighted_block::<M, LANES>(p, v, stride, d0, out),
            2 => weighted_block::<M, { 2 * LANES }>(p, v, stride, d0, out),
            3 => weighted_block::<M, { 3 * LANES }>(p, v, stride, d0, out),
            _ => weighted_block::<M, { 4 * LANES }>(p, v, stride, d0, out),
        }
        d0 += blocks * LANES;
    }
    let tail = &mut out[d0..];
    tail.fill(0.0);
    for (t, &pt) in p.iter().enumerate() {
        for (o, x) in tail.iter_mut().zip(&v[t * stride + d0..]) {
            *o = M::mul_add(pt, *x, *o);
        }
    }
}

/// `W` outputs of [`weighted_sum`] from `d0`, `d0 + W <= out.len()`.
#[inline(always)]
fn weighted_block<M: MulAdd, const W: usize>(
    p: &[f32],
    v: &[f32],
    stride: usize,
    d0: usize,
    out: &mut [f32],
) {
    out[d0..d0 + W].copy_from_slice(&accumulate::<M, W>(p, v, stride, d0));
}

/// An element-wise activation over a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Exact (erf) GELU: BERT, RoBERTa, DistilBERT.
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
    Silu,
    Tanh,
}

#[inline(always)]
fn activate_one<M: MulAdd>(v: f32, act: Act) -> f32 {
    match act {
        Act::Gelu => gelu::<M>(v),
        Act::GeluTanh => {
            let inner = (2.0 / std::f32::consts::PI).sqrt() * M::mul_add(0.044_715 * v, v * v, v);
            0.5 * v * (1.0 + tanh::<M>(inner))
        }
        Act::Relu => v.max(0.0),
        Act::Silu => v / (1.0 + exp::<M>(-v)),
        Act::Tanh => tanh::<M>(v),
    }
}

/// `act` over a fixed-size block: a constant trip count, so it vectorises whole (a short
/// slice of unknown length can fall entirely into the scalar remainder loop). One loop per
/// activation, so the `match` is not inside the loop.
#[inline(always)]
pub(super) fn activate_block<M: MulAdd, const N: usize>(x: &mut [f32; N], act: Act) {
    macro_rules! each {
        ($act:expr) => {
            for v in x.iter_mut() {
                *v = activate_one::<M>(*v, $act);
            }
        };
    }
    match act {
        Act::Gelu => each!(Act::Gelu),
        Act::GeluTanh => each!(Act::GeluTanh),
        Act::Relu => each!(Act::Relu),
        Act::Silu => each!(Act::Silu),
        Act::Tanh => each!(Act::Tanh),
    }
}

#[inline(always)]
pub(super) fn activate<M: MulAdd>(x: &mut [f32], act: Act) {
    let mut blocks = x.chunks_exact_mut(LANES);
    for block in &mut blocks {
        let block: &mut [f32; LANES] = block.try_into().expect("LANES values");
        activate_block::<M, LANES>(block, act);
    }
    for v in blocks.into_remainder() {
        *v = activate_one::<M>(*v, act);
    }
}

/// `out[q] = bf16(x[2q]) | bf16(x[2q + 1]) << 16`, zero past the end of `x`: the bf16 pairs
/// along k that `vdpbf16ps` multiplies.
#[inline(always)]
pub(super) fn to_bf16_pairs<M: MulAdd>(x: &[f32], out: &mut [u32]) {
    let mut pairs = x.chunks_exact(2);
    for (o, p) in out.iter_mut().zip(&mut pairs) {
        *o = bf16_bits(p[0]) as u32 | (bf16_bits(p[1]) as u32) << 16;
    }
    if let ([last], Some(o)) = (pairs.remainder(), out.get_mut(x.len() / 2)) {
        *o = bf16_bits(*last) as u32;
    }
}

/// Every value rounded to the nearest bf16, kept as f32 (bf16 emulated on f32 kernels).
#[inline(always)]
pub(super) fn round_bf16<M: MulAdd>(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = f32::from_bits((bf16_bits(*v) as u32) << 16);
    }
}

/// Adding then subtracting 1.5 * 2^23 rounds an f32 below 2^22 in magnitude to the nearest
/// integer, ties to even, in two plain additions that vectorise at every level (`round` and
/// `round_ties_even` are libm calls on the SSE2 baseline).
const ROUND: f32 = 12_582_912.0;

/// Per-row asymmetric quantization of one row of activations for the int8 products:
/// `out[i] = clamp(round(x[i] / scale) + zero, 0, max)`, zero past `x.len()`; returns
/// `(scale, zero)`. The range is `[min(x, 0), max(x, 0)]`, so 0 is exact (`zero` codes it)
/// and the `max + 1` codes (256, or 128 for the `vpmaddubsw` kernels) span the row's own
/// values: a row after GELU (-0.17 up) uses all of them, where a symmetric code would waste
/// half. An all-zero row is all `0` with scale 0.
#[inline(always)]
pub(super) fn quantize_row<M: MulAdd>(x: &[f32], out: &mut [u8], max_code: u8) -> (f32, i32) {
    let codes = f32::from(max_code.max(1));
    let (mut lo, mut hi) = ([0f32; LANES], [0f32; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
            hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
        }
    }
    let (mut min, mut max) = (0f32, 0f32);
    for &v in chunks.remainder().iter().chain(&lo) {
        min = if v < min { v } else { min };
    }
    for &v in chunks.remainder().iter().chain(&hi) {
        max = if v > max { v } else { max };
    }
    let scale = (max - min) / codes;
    let (head, tail) = out.split_at_mut(x.len().min(out.len()));
    tail.fill(0);
    // An all-zero row (or one whose range is not finite) has no scale to divide by: all
    // zero codes, and a scale that gives 0 (or, for infinities, NaN as f32 would).
    if !(scale > 0.0 && scale.is_finite()) {
        head.fill(0);
        return (if scale == 0.0 { 0.0 } else { f32::NAN }, 0);
    }
    let inv = 1.0 / scale;
    let zero = ((-min * inv + ROUND) - ROUND).clamp(0.0, codes);
    for (q, &v) in head.iter_mut().zip(x) {
        // `max` then `min` keep every value in 0..=max, NaN included (`max` returns 0 for it).
        let c = (((v * inv + ROUND) - ROUND) + zero).max(0.0).min(codes);
        // A whole number c in 0..=255 plus 1.5 * 2^23 sits in the low bits of the sum's
        // mantissa, so the bit patterns' difference is c exactly. Casting with `as` gives the
        // same codes but saturates lane by lane: compiled to scalar code, it took 14% of an
        // int8 forward pass; this vectorises.
        *q = (c + ROUND).to_bits().wrapping_sub(ROUND.to_bits()) as u8;
    }
    (scale, zero as i32)
}
