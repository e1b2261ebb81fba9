//! Attention of one sequence and head as two packed products, for sequences with many
//! queries: the scores `Q K^T` and the weighted sums `P V` run on the level's f32 matrix
//! kernel (`kernel.rs`), with the keys and the values packed as its weight panels.
//!
//! The blocked kernel of `attention.rs` is auto-vectorised and holds 4 queries x 16 keys in
//! registers; the products' hand-written tiles hold 6 x 16 (avx2) or 8 x 32 (avx512). On long
//! reviews attention was 15% of an f32 pass and 25% of an int8 one (one Zen 3 core, `perf`), at
//! under half the products' rate; this way one head ran 1.1-1.3x faster there (`cargo bench
//! --bench micro -- attention`: 47 against 36 GFLOP/s at 228 tokens). Packing the keys and
//! values is `O(len x hd)`, against `O(len^2 x hd)` for the products, so it pays only with
//! many queries: [`MIN_QUERIES`]. Queries go in blocks of [`QUERY_ROWS`], so that the scores held at
//! once are `QUERY_ROWS x len` and memory stays linear in the sequence's length.
//!
//! Same sums in the same order as `attention.rs` (each score over the head's dimensions in
//! order, each output over the keys in order), in f32 whatever the model's weights are.

use super::isa::Isa;
use super::kernel::{Kernel, Operands, WeightFormat};
use super::matmul::pack_f32;
use super::tile::Task;

/// Below this many queries (the last layer's first token, a few short sentences) the blocked
/// kernel is as fast and packs nothing.
pub const MIN_QUERIES: usize = 32;

/// Queries whose scores are held at once: 48 rows are whole tiles at avx2 (6) and avx512 (8),
/// and 48 x 512 scores are 96 KiB, within a core's L2.
const QUERY_ROWS: usize = 48;

/// Softmax attention of `queries = out.len() / hd` query rows over `len` tokens into `out`,
/// `[queries][hd]`: query `i`'s values at `q[i * stride..][..hd]`, token `t`'s key at
/// `k[t * stride..][..hd]` and value at `v[t * stride..][..hd]` (the head's columns of the
/// fused QKV rows); `scale` multiplies the dot products before the softmax. Panics if a
/// slice is shorter than that (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn attend_by_products(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    len: usize,
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    if hd == 0 || len == 0 {
        out.fill(0.0);
        return;
    }
    let queries = out.len() / hd;
    let last = |n: usize| (n.max(1) - 1) * stride + hd;
    assert!(
        out.len() == queries * hd
            && q.len() >= last(queries)
            && k.len() >= last(len)
            && v.len() >= last(len),
        "attention operands: {queries} queries, {len} tokens of {hd} at stride {stride}"
    );
    let kernel = Kernel::choose(isa, WeightFormat::F32);
    let nr = kernel.nr();
    // The keys as the weights `[len, hd]` of the scores' product, packed as a weight matrix
    // is; the values transposed, `[hd, len]`, as those of the weighted sums': a panel of
    // `[len][nr]` is then `nr` of each token's values, copied as they lie.
    let keys = pack_f32(k, stride, len, hd, nr);
    let mut values = vec![0f32; hd.div_ceil(nr) * len * nr];
    for (p, panel) in values.chunks_exact_mut(len * nr).enumerate() {
        let cols = nr.min(hd - p * nr);
        for (t, dst) in panel.chunks_exact_mut(nr).enumerate() {
            dst[..cols].copy_from_slice(&v[t * stride + p * nr..][..cols]);
        }
    }
    let zeros = vec![0f32; len.max(hd).div_ceil(nr) * nr];
    let block = QUERY_ROWS.min(queries);
    let mut qs = vec![0f32; block * hd];
    let mut scores = vec![0f32; block * len];
    for (b, out) in out.chunks_mut(QUERY_ROWS * hd).enumerate() {
        let rows = out.len() / hd;
        let qs = &mut qs[..rows * hd];
        for (i, dst) in qs.chunks_exact_mut(hd).enumerate() {
            for (d, &x) in dst
                .iter_mut()
                .zip(&q[(b * QUERY_ROWS + i) * stride..][..hd])
            {
                *d = x * scale;
            }
        }
        let scores = &mut scores[..rows * len];
        product(
            kernel,
            qs,
            hd,
            &keys,
            &zeros[..len.div_ceil(nr) * nr],
            scores,
            len,
        );
        for row in scores.chunks_exact_mut(len) {
            isa.softmax(row);
        }
        product(
            kernel,
            scores,
            len,
            &values,
            &zeros[..hd.div_ceil(nr) * nr],
            out,
            hd,
        );
    }
}

/// `out[m, n] = x[m, k] W^T` on `kernel`, `W` packed as `panels`, on this thread.
fn product(
    kernel: Kernel,
    x: &[f32],
    k: usize,
    panels: &[f32],
    zeros: &[f32],
    out: &mut [f32],
    n: usize,
) {
    let task = Task {
        x,
        k,
        panels,
        bias: zeros,
        act: None,
        dequant: (),
    };
    let mut rows: Vec<&mut [f32]> = out.chunks_exact_mut(n).collect();
    kernel.run(&Operands::F32(task), &mut rows);
}
