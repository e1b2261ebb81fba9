//! int8 products, as PyTorch's `quantize_dynamic` computes them but with finer scales:
//! weights quantized once at load, per output channel and symmetric (i8 in -127..=127);
//! activations quantized per row at run time, asymmetric (u8 with a zero point, see
//! [`super::generic::quantize_row`]); sums of products in i32; then
//! `out = (sum - zero * column sum) * row scale * column scale + bias`, and the activation,
//! in f32. Per-row (per-token) activation scales are what keep the f32 decisions: one scale per
//! tensor, as PyTorch and ONNX Runtime use, lost 4% of them on minilm-sst2 (BENCHMARKS.md).
//!
//! The kernels: AVX512-VNNI's `vpdpbusd` (u8 x i8 in fours, summed into i32), and, without
//! it, `vpmaddubsw` (AVX-512BW and AVX2: pairs of u8 x i8 products summed into i16, then
//! `vpmaddwd` by ones into i32). A pair sum would saturate i16 at 255 * 127 * 2, so for those
//! kernels the activations are quantized to 7 bits, 0..=127 (127 * 127 * 2 = 32,258 fits):
//! one bit of input precision traded for twice `vpmaddwd`'s products per instruction, as
//! PyTorch's `reduce_range` does on x86 (7-bit weights instead, oneDNN's choice, measured
//! worse here: BENCHMARKS.md). Where bounding a matrix's weight codes changes them little
//! (trained weights: [`MAX_BOUND_CHANGE`]), those kernels add two steps' pair sums in i16
//! before widening ([`bound_pair_groups`]). Plain loops are the portable version and the
//! reference. Every kernel computes its integer sums exactly, so kernels with the same
//! activation range and weight codes give the same results up to the f32 epilogue.

use super::math::MulAdd;
use super::tile::{self, by_rows, Task};

/// The longest rows (`k`) an int8 product takes: every partial sum is at most
/// `255 * 127 * k` in magnitude (u8 codes times i8 weights, the zero-point term the same
/// size), under `i32::MAX` for `k <= 65536` (2_122_383_360 < 2_147_483_647). A test runs the
/// extreme values at this `k`.
pub const MAX_K: usize = 65_536;

/// Per output channel symmetric quantization of row-major `w [n, k]`: codes
/// `round(w / scale)` in -127..=127 (never -128, so negating a code cannot overflow), and
/// each row's scale `max |w| / 127` (0 for an all-zero row, whose codes are all 0).
pub fn quantize_weights(w: &[f32], k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / k.max(1));
    for (row, out) in w.chunks_exact(k).zip(codes.chunks_exact_mut(k)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        if scale > 0.0 && scale.is_finite() {
            for (q, &v) in out.iter_mut().zip(row) {
                // `as i8` saturates; the clamp keeps -128 out.
                *q = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            scales.push(scale);
        } else {
            scales.push(if scale == 0.0 { 0.0 } else { f32::NAN });
        }
    }
    (codes, scales)
}

/// The most a group of weight codes that the `vpmaddubsw` kernels sum in one i16 lane may
/// weigh, `sum |code|`: with activation codes up to 127, `127 * 258 = 32,766` fits i16.
pub const PAIR_GROUP_MAX: i32 = i16::MAX as i32 / PAIR_ACTIVATION_MAX as i32;

/// Bounds the weight codes (row-major `[n, k]`) for the `vpmaddubsw` kernels, which add two
/// steps' pair sums in i16 before widening (one `vpmaddwd` per two `vpmaddubsw`, a third
/// fewer multiplier instructions): per row, k values `8Q + 2p`, `8Q + 2p + 1`, `8Q + 4 + 2p`
/// and `8Q + 4 + 2p + 1` share a lane (`p` 0 or 1), so their `sum |code|` must stay within
/// [`PAIR_GROUP_MAX`]. Where it does not, every nonzero code of the group moves one step
/// towards zero in turn, largest first, until it does: the least squared change for the
/// excess. On trained weights (minilm-sst2) 0.7% of groups exceed it; see
/// [`MAX_BOUND_CHANGE`] for where the kernel takes this.
pub(super) fn bound_pair_groups(codes: &mut [i8], k: usize) {
    for row in codes.chunks_exact_mut(k) {
        for base in (0..k).step_by(2 * GROUP) {
            for p in 0..2 {
                let lane = [0, 1, GROUP, GROUP + 1].map(|d| base + 2 * p + d);
                let abs = |i: usize| row.get(i).map_or(0, |&c| i32::from(c).abs());
                let mut sum: i32 = lane.iter().map(|&i| abs(i)).sum();
                if sum <= PAIR_GROUP_MAX {
                    continue;
                }
                let mut idx: Vec<usize> = lane.into_iter().filter(|&i| i < k).collect();
                idx.sort_by_key(|&i| std::cmp::Reverse(abs(i)));
                while sum > PAIR_GROUP_MAX {
                    for &i in &idx {
                        if sum <= PAIR_GROUP_MAX {
                            break;
                        }
                        if row[i] != 0 {
                            row[i] -= row[i].signum();
                            sum -= 1;
                        }
                    }
                }
            }
        }
    }
}

/// The most bounding the weights for two steps in i16 may change them, as a share of the
/// codes' energy (`sum (bounded - code)^2 / sum code^2`), beyond which a matrix keeps its
/// codes and the one-step kernel. Trained weights put a few large values in a row: on
/// minilm-sst2 0.7% of groups exceed the bound and every matrix stays under 0.09%, agreement
/// with f32 unchanged. Random weights of narrow layers (the 32-wide test fixtures) spread
/// large codes everywhere: 0.35-1%, and their scores moved by up to 0.9 when bounded.
const MAX_BOUND_CHANGE: f64 = 2e-3;

/// The weight codes and per-channel scales of row-major `w [n, k]` for a kernel that adds
/// two steps in i16 where it may (`two_steps`, the `vpmaddubsw` kernels), and whether it
/// may: the codes bounded by [`bound_pair_groups`] where that changes them by at most
/// [`MAX_BOUND_CHANGE`], as they are otherwise. Deterministic, so the same weights give the
/// same codes again.
pub(super) fn weight_codes(w: &[f32], k: usize, two_steps: bool) -> (Vec<i8>, Vec<f32>, bool) {
    let (codes, scales) = quantize_weights(w, k);
    if !two_steps {
        return (codes, scales, false);
    }
    let mut bounded = codes.clone();
    bound_pair_groups(&mut bounded, k);
    let square = |v: i32| f64::from(v * v);
    let change: f64 = (codes.iter().zip(&bounded))
        .map(|(&a, &b)| square(i32::from(a) - i32::from(b)))
        .sum();
    let total: f64 = codes.iter().map(|&c| square(i32::from(c))).sum();
    if change <= MAX_BOUND_CHANGE * total {
        (bounded, scales, true)
    } else {
        (codes, scales, false)
    }
}

/// The largest activation code of the `vpmaddubsw` kernels: a pair of products of these and
/// weight codes stays in i16 (127 * 127 * 2 = 32,258).
pub(super) const PAIR_ACTIVATION_MAX: u8 = 127;

/// Every kernel multiplies four consecutive k values of a column at once: panels are
/// `[kpad / 4][nr][4]` codes, k zero-padded to `kpad`, a multiple of 4.
pub(super) const GROUP: usize = 4;

/// `[panel][kpad / GROUP][nr][GROUP]` from row-major codes `q [n, k]`, zero past `n` and `k`.
pub(super) fn pack(q: &[i8], n: usize, k: usize, nr: usize) -> Vec<i8> {
    let group = GROUP;
    let kpad = k.next_multiple_of(group);
    let mut data = vec![0i8; n.div_ceil(nr) * kpad * nr];
    for (row, codes) in q.chunks_exact(k).enumerate() {
        let (p, j) = (row / nr, row % nr);
        for (kk, &v) in codes.iter().enumerate() {
            data[p * kpad * nr + (kk / group) * nr * group + j * group + kk % group] = v;
        }
    }
    data
}

/// What turns a tile's i32 sums into f32 values: each row's `(scale, zero point)` and, for
/// this task's columns (`[panel][nr]`, zero-padded), the weight scales and the sums of each
/// column's codes.
pub(super) struct Dequant<'a> {
    pub(super) rows: &'a [(f32, i32)],
    pub(super) scales: &'a [f32],
    pub(super) sums: &'a [i32],
}

impl Dequant<'_> {
    /// `(sum - zero * column sum) * row scale * column scale` for a tile of rows from `row0`
    /// and columns from `c0` (relative to the task). The i32 arithmetic cannot overflow for
    /// `k <= MAX_K` (see there).
    #[inline(always)]
    pub(super) fn apply<const R: usize, const NR: usize>(
        &self,
        acc: &[[i32; NR]; R],
        row0: usize,
        c0: usize,
    ) -> [[f32; NR]; R] {
        let rows: &[(f32, i32); R] = self.rows[row0..row0 + R].try_into().expect("R rows");
        let scales: &[f32; NR] = self.scales[c0..c0 + NR].try_into().expect("NR columns");
        let sums: &[i32; NR] = self.sums[c0..c0 + NR].try_into().expect("NR columns");
        let mut out = [[0f32; NR]; R];
        for i in 0..R {
            let (scale, zero) = rows[i];
            for j in 0..NR {
                // Wrapping operations, which never wrap here (see above): the same values,
                // and no overflow checks to keep debug builds from vectorising this.
                let sum = acc[i][j].wrapping_sub(zero.wrapping_mul(sums[j]));
                out[i][j] = sum as f32 * (scale * scales[j]);
            }
        }
        out
    }
}

/// One task's share of an int8 product: the activation codes (`k`, a multiple of [`GROUP`],
/// per row), this task's weight panels and how their sums turn into f32.
pub(super) type Int8Task<'a> = Task<'a, u8, i8, Dequant<'a>>;

/// The plain-loop int8 product over a task's panels (`[panel][k / 4][NR][4]`).
#[inline(always)]
pub(super) fn plain_panels<M: MulAdd, const MR: usize, const NR: usize>(
    task: &Int8Task,
    out: &mut [&mut [f32]],
) {
    let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
    tile::walk_panels::<i8, NR>(
        m,
        MR,
        (task.panels, task.k * NR),
        task.bias,
        width,
        |rows, row, (panel, _), bias, (c0, cols)| {
            macro_rules! call {
                ($r:literal) => {{
                    let acc = plain_tile::<$r, NR>(task.x, task.k, row, panel);
                    let values = task.dequant.apply(&acc, row, c0);
                    for (i, mut v) in values.into_iter().enumerate() {
                        tile::epilogue::<M, NR>(&mut v, bias, task.act);
                        tile::store(&mut out[row + i][c0..c0 + cols], &v);
                    }
                }};
            }
            by_rows!(rows, call)
        },
    );
}

/// The i32 sums of `R` rows of codes (`kpad` each, from `row0`) times one `[kpad / 4][NR][4]`
/// panel.
#[inline(always)]
fn plain_tile<const R: usize, const NR: usize>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    panel: &[i8],
) -> [[i32; NR]; R] {
    let rows: [&[u8]; R] = std::array::from_fn(|i| &x[(row0 + i) * kpad..][..kpad]);
    let mut a = [[0i32; NR]; R];
    for (q, b) in panel[..kpad * NR].chunks_exact(4 * NR).enumerate() {
        for i in 0..R {
            let xs: [i32; 4] = std::array::from_fn(|t| rows[i][4 * q + t] as i32);
            for j in 0..NR {
                for t in 0..4 {
                    a[i][j] += xs[t] * b[4 * j + t] as i32;
                }
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every group of a row ends within the bound; groups already within it, signs and zeros
    /// stay as they were; no code grows; the excess comes off the group's nonzero codes
    /// evenly (decrements differ by at most one, except where a code reached zero).
    #[test]
    fn bounding_pair_groups() {
        let k = 27; // three blocks of 8 and a partial one
        let mut s = 7u32;
        let mut codes: Vec<i8> = (0..5 * k)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 16) % 255) as i8 as i16 as i8
            })
            .map(|c| c.max(-127))
            .collect();
        codes[..8].copy_from_slice(&[127, 127, 127, 127, 127, 127, 127, 127]);
        codes[8..16].copy_from_slice(&[127, -127, 0, 0, 4, 0, 0, 0]);
        let before = codes.clone();
        bound_pair_groups(&mut codes, k);
        for (row, old) in codes.chunks_exact(k).zip(before.chunks_exact(k)) {
            for base in (0..k).step_by(8) {
                for p in 0..2 {
                    let lane: Vec<usize> = [0, 1, 4, 5]
                        .into_iter()
                        .map(|d| base + 2 * p + d)
                        .filter(|&i| i < k)
                        .collect();
                    let weight = |c: &[i8]| lane.iter().map(|&i| i32::from(c[i]).abs()).sum();
                    let (new_sum, old_sum): (i32, i32) = (weight(row), weight(old));
                    assert!(new_sum <= PAIR_GROUP_MAX, "{new_sum}");
                    if old_sum <= PAIR_GROUP_MAX {
                        assert!(lane.iter().all(|&i| row[i] == old[i]));
                        continue;
                    }
                    assert_eq!(new_sum, PAIR_GROUP_MAX, "only the excess comes off");
                    let cuts: Vec<i32> = lane
                        .iter()
                        .filter(|&&i| row[i] != 0)
                        .map(|&i| i32::from(old[i]).abs() - i32::from(row[i]).abs())
                        .collect();
                    for &i in &lane {
                        assert!(row[i] == 0 || row[i].signum() == old[i].signum());
                        assert!(i32::from(row[i]).abs() <= i32::from(old[i]).abs());
                    }
                    let (lo, hi) = (cuts.iter().min(), cuts.iter().max());
                    assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1), "{cuts:?}");
                }
            }
        }
        // The all-127 group of four becomes 65, 65, 64, 64 (in some order); the lone 127,
        // -127, 4 group (258) stays.
        let mut first: Vec<i8> = [0, 1, 4, 5].map(|i| codes[i]).to_vec();
        first.sort();
        assert_eq!(first, [64, 64, 65, 65]);
        assert_eq!(&codes[8..16], &[127, -127, 0, 0, 4, 0, 0, 0]);
    }
}
