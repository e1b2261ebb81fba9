//! Attention's row operations, compiled per level like `generic.rs`'s: softmax, and the
//! attention of one sequence and head a block of queries at a time.
//!
//! One query at a time, every score row streams all of the head's keys and every output all
//! of its values: for a 512-token review that is 128 KiB read per query from L2, and the
//! multiply-adds wait on the loads. A block of [`QUERY_BLOCK`] queries reads each key and value
//! once for all of them, with the block's accumulators in registers: a register-tiled product,
//! as the matrix products are. The scores of a block are `QUERY_BLOCK x len`, so memory stays
//! linear in the sequence's length; an online softmax over key tiles (flash attention) would
//! bound them further, which pays only past the lengths these encoders take.

use super::math::{exp, sum_lanes, MulAdd, LANES};

/// `x = softmax(x)`, shifted by the maximum so that large scores cannot overflow.
#[inline(always)]
pub(super) fn softmax<M: MulAdd>(x: &mut [f32]) {
    let mut max = [f32::MIN; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            max[j] = if c[j] > max[j] { c[j] } else { max[j] };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&max)
        .fold(f32::MIN, |m, &v| if v > m { v } else { m });
    let mut sum = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = exp::<M>(c[j] - max);
            sum[j] += c[j];
        }
    }
    let mut total = sum_lanes(sum);
    for v in chunks.into_remainder() {
        *v = exp::<M>(*v - max);
        total += *v;
    }
    let inv = 1.0 / total;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Queries per block: with [`LANES`]-wide accumulators, 4 x 16 values are 8 of AVX2's 16
/// registers (4 of AVX-512's 32), which leaves room for the loads.
pub const QUERY_BLOCK: usize = 4;

/// Softmax attention of `queries` query rows over `len` tokens into `out`, `[queries][hd]`.
///
/// - `q`: query `i`'s `hd` values at `q[i * stride..]`;
/// - `kt`: the keys transposed, `[hd][kt_stride]`, `kt_stride` a multiple of [`LANES`] at
///   least `len`, zero past `len`;
/// - `v`: token `t`'s `hd` values at `v[t * stride..]`;
/// - `scratch`: at least `QUERY_BLOCK * (kt_stride + hd)` values (a block's scores and
///   queries), reused across calls so that no block allocates.
///
/// `scale` multiplies the dot products before the softmax.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn attend<M: MulAdd>(
    q: &[f32],
    stride: usize,
    kt: &[f32],
    kt_stride: usize,
    v: &[f32],
    len: usize,
    scale: f32,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let hd = kt.len() / kt_stride.max(1);
    if hd == 0 || len == 0 {
        out.fill(0.0);
        return;
    }
    let queries = out.len() / hd;
    assert!(
        kt_stride.is_multiple_of(LANES)
            && kt_stride >= len
            && kt.len() == hd * kt_stride
            && scratch.len() >= QUERY_BLOCK * (kt_stride + hd)
            && q.len() >= (queries.max(1) - 1) * stride + hd
            && v.len() >= (len - 1) * stride + hd
    );
    let (scores, qd) = scratch.split_at_mut(QUERY_BLOCK * kt_stride);
    for (b, out) in out.chunks_mut(QUERY_BLOCK * hd).enumerate() {
        let q = &q[b * QUERY_BLOCK * stride..];
        match out.len() / hd {
            1 => block::<M, 1>(q, stride, kt, kt_stride, v, len, scale, scores, qd, out),
            2 => block::<M, 2>(q, stride, kt, kt_stride, v, len, scale, scores, qd, out),
            3 => block::<M, 3>(q, stride, kt, kt_stride, v, len, scale, scores, qd, out),
            _ => block::<M, QUERY_BLOCK>(q, stride, kt, kt_stride, v, len, scale, scores, qd, out),
        }
    }
}

/// [`attend`] for `Q` queries.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<M: MulAdd, const Q: usize>(
    q: &[f32],
    stride: usize,
    kt: &[f32],
    kt_stride: usize,
    v: &[f32],
    len: usize,
    scale: f32,
    scores: &mut [f32],
    qd: &mut [f32],
    out: &mut [f32],
) {
    let hd = out.len() / Q;
    // The block's query values, scaled, `[d][Q]`, so that step `d` reads one short row.
    let qd = &mut qd[..hd * Q];
    for i in 0..Q {
        for (d, &x) in q[i * stride..][..hd].iter().enumerate() {
            qd[d * Q + i] = x * scale;
        }
    }
    // Scores, LANES keys at a time for all Q queries.
    let mut t0 = 0;
    while t0 < len {
        let mut acc = [[0f32; LANES]; Q];
        for (d, qs) in qd.chunks_exact(Q).enumerate() {
            let row: &[f32; LANES] = kt[d * kt_stride + t0..][..LANES]
                .try_into()
                .expect("LANES keys: kt_stride is a multiple of LANES");
            for i in 0..Q {
                for j in 0..LANES {
                    acc[i][j] = M::mul_add(qs[i], row[j], acc[i][j]);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            scores[i * kt_stride + t0..][..LANES].copy_from_slice(a);
        }
        t0 += LANES;
    }
    for i in 0..Q {
        softmax::<M>(&mut scores[i * kt_stride..][..len]);
    }
    // Outputs, LANES dimensions at a time for all Q queries, then the tail.
    let mut d0 = 0;
    while d0 + LANES <= hd {
        let mut acc = [[0f32; LANES]; Q];
        for t in 0..len {
            let row: &[f32; LANES] = v[t * stride + d0..][..LANES]
                .try_into()
                .expect("LANES values");
            for i in 0..Q {
                let p = scores[i * kt_stride + t];
                for j in 0..LANES {
                    acc[i][j] = M::mul_add(p, row[j], acc[i][j]);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            out[i * hd + d0..][..LANES].copy_from_slice(a);
        }
        d0 += LANES;
    }
    if d0 < hd {
        for i in 0..Q {
            let o = &mut out[i * hd + d0..(i + 1) * hd];
            o.fill(0.0);
            for t in 0..len {
                let p = scores[i * kt_stride + t];
                for (o, x) in o.iter_mut().zip(&v[t * stride + d0..]) {
                    *o = M::mul_add(p, *x, *o);
                }
            }
        }
    }
}
