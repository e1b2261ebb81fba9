//! ModernBERT's attention on the host: rotary positions applied to the fused QKV rows, then
//! attention per sequence and head without padding, over the whole sequence (global layers) or
//! only the keys within the sliding window (local layers: cost linear in the sequence length).

use super::super::cpu::{Isa, LANES};
use super::layers::{per_head_with_work, Rows};
use std::ops::Range;

/// Positions whose rotary angles are tabled at load: ModernBERT's usual 8,192 at most (2 MiB
/// per base at head size 64), whatever `max_position_embeddings` says; a longer input's later
/// positions are computed when met, the same way.
const TABLE_POSITIONS: usize = 8192;

/// The cosines and sines of one rotary base's angles, `[positions][head_dim / 2]`.
pub(super) struct Rotary {
    inv_freq: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rotary {
    pub(super) fn new(theta: f64, head_dim: usize, positions: usize) -> Self {
        // As transformers computes them (and candle's path), in f32: 1 / theta^(2i / head_dim),
        // then position × that.
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let positions = positions.min(TABLE_POSITIONS);
        let mut rotary = Self {
            cos: vec![0.0; positions * inv_freq.len()],
            sin: vec![0.0; positions * inv_freq.len()],
            inv_freq,
        };
        let half = rotary.inv_freq.len();
        for p in 0..positions {
            let (cos, sin) = (
                &mut rotary.cos[p * half..(p + 1) * half],
                &mut rotary.sin[p * half..(p + 1) * half],
            );
            angles(&rotary.inv_freq, p, cos, sin);
        }
        rotary
    }

    /// Rotates the query and key parts of each token's QKV row (`[3 * hidden]`: queries, keys,
    /// values) by the angles of the token's position in its sequence: each head's halves
    /// `(a, b)` become `(a cos - b sin, b cos + a sin)`, candle's `rope` (not interleaved).
    pub(super) fn rotate(&self, qkv: &mut [f32], rows: &Rows, hidden: usize) {
        let half = self.inv_freq.len();
        let positions = self.cos.len() / half.max(1);
        let (mut far_cos, mut far_sin) = (vec![0f32; half], vec![0f32; half]);
        let stride = 3 * hidden;
        for (&start, &len) in rows.start.iter().zip(rows.len) {
            let seq = &mut qkv[start * stride..(start + len) * stride];
            for (p, row) in seq.chunks_exact_mut(stride).enumerate() {
                let (cos, sin) = if p < positions {
                    (
                        &self.cos[p * half..(p + 1) * half],
                        &self.sin[p * half..(p + 1) * half],
                    )
                } else {
                    angles(&self.inv_freq, p, &mut far_cos, &mut far_sin);
                    (&far_cos[..], &far_sin[..])
                };
                // Queries then keys: `2 * heads` parts of `2 * half` values each.
                for part in row[..2 * hidden].chunks_exact_mut(2 * half) {
                    let (a, b) = part.split_at_mut(half);
                    for (((a, b), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
                        let (x, y) = (*a, *b);
                        *a = x * c - y * s;
                        *b = y * c + x * s;
                    }
                }
            }
        }
    }
}

/// The cosines and sines of position `p`'s angles.
fn angles(inv_freq: &[f32], p: usize, cos: &mut [f32], sin: &mut [f32]) {
    for ((&f, c), s) in inv_freq.iter().zip(cos).zip(sin) {
        let angle = p as f32 * f;
        *c = angle.cos();
        *s = angle.sin();
    }
}

/// What one layer's attention computes.
pub(super) struct Shape {
    pub heads: usize,
    pub head_dim: usize,
    /// `Some(w)` in a local layer: a token sees those at most `w` positions away.
    pub window: Option<usize>,
    /// Only each sequence's first query (the last layer under first-token pooling).
    pub first_only: bool,
}

impl Shape {
    /// The keys query `i` of a `len`-token sequence sees, as transformers' sliding-window mask
    /// allows them (`|i - j| <= w`) or all of them.
    fn keys(&self, i: usize, len: usize) -> Range<usize> {
        match self.window {
            None => 0..len,
            Some(w) => i.saturating_sub(w)..(i + w + 1).min(len),
        }
    }

    fn queries(&self, len: usize) -> usize {
        if self.first_only {
            1
        } else {
            len
        }
    }
}

/// Scaled dot-product attention of each sequence over its own tokens, out of the rotated QKV
/// rows: `[rows, hidden]`, or one row per sequence (its first token's) when `first_only`.
pub(super) fn attend(isa: Isa, qkv: &[f32], rows: &Rows, shape: &Shape) -> Vec<f32> {
    let work = rows
        .len
        .iter()
        .map(|&l| shape.queries(l) * shape.keys(l / 2, l).len())
        .sum();
    per_head_with_work(
        rows,
        shape.heads,
        shape.head_dim,
        shape.first_only,
        work,
        |s, head| head_context(isa, qkv, rows, shape, s, head),
    )
}

/// One sequence's and head's context, `[queries][head_dim]`: each query's scores against the
/// keys it sees only, so no `L x L` block exists and a local layer's cost is linear in `L`.
fn head_context(
    isa: Isa,
    qkv: &[f32],
    rows: &Rows,
    shape: &Shape,
    s: usize,
    head: usize,
) -> Vec<f32> {
    let hd = shape.head_dim;
    let h = shape.heads * hd;
    let stride = 3 * h;
    let scale = 1.0 / (hd as f32).sqrt();
    let (start, len) = (rows.start[s], rows.len[s]);
    let queries = shape.queries(len);
    let seq = &qkv[start * stride..(start + len) * stride];
    // The keys some query sees: all but for a local layer's first query alone.
    let used = shape.keys(queries - 1, len).end;
    // Keys transposed for `Isa::scores`, `[hd][padded]`, plus one zero row: a query's keys
    // start `a` values into each row, and the kernel reads `hd` whole rows of `padded` from
    // there (values past the query's keys land in scores it drops).
    let padded = used.next_multiple_of(LANES);
    let mut kt = vec![0f32; (hd + 1) * padded];
    for (token, row) in seq.chunks_exact(stride).take(used).enumerate() {
        for (d, &k) in row[h + head * hd..][..hd].iter().enumerate() {
            kt[d * padded + token] = k;
        }
    }
    let mut scores = vec![0f32; padded];
    let mut out = vec![0f32; queries * hd];
    for (i, o) in out.chunks_exact_mut(hd).enumerate() {
        let keys = shape.keys(i, len);
        let p = &mut scores[..keys.len()];
        let q = &seq[i * stride + head * hd..][..hd];
        isa.scores(q, &kt[keys.start..], padded, scale, p);
        isa.softmax(p);
        isa.weighted_sum(
            p,
            &seq[keys.start * stride + 2 * h + head * hd..],
            stride,
            o,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::batch::Batch;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let x = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2000;
                x as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Each query's context as the full masked computation gives it: every key scored,
    /// those outside the window dropped.
    fn naive(qkv: &[f32], lengths: &[usize], shape: &Shape) -> Vec<f32> {
        let (nh, hd) = (shape.heads, shape.head_dim);
        let (h, stride) = (nh * hd, 3 * nh * hd);
        let mut out = Vec::new();
        let mut start = 0;
        for &len in lengths {
            let queries = if shape.first_only { 1 } else { len };
            for i in 0..queries {
                for head in 0..nh {
                    let at = |t: usize, part: usize, d: usize| {
                        qkv[(start + t) * stride + part * h + head * hd + d]
                    };
                    let seen = |j: usize| shape.window.is_none_or(|w| i.abs_diff(j) <= w);
                    let scores: Vec<f64> = (0..len)
                        .map(|j| {
                            let dot: f64 =
                                (0..hd).map(|d| (at(i, 0, d) * at(j, 1, d)) as f64).sum();
                            dot / (hd as f64).sqrt()
                        })
                        .collect();
                    let max = (0..len)
                        .filter(|&j| seen(j))
                        .map(|j| scores[j])
                        .fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = (0..len)
                        .map(|j| {
                            if seen(j) {
                                (scores[j] - max).exp()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..hd {
                        let v: f64 = (0..len).map(|j| weights[j] * at(j, 2, d) as f64).sum();
                        out.push((v / total) as f32);
                    }
                }
            }
            start += len;
        }
        out
    }

    /// Only the window's keys are scored, read at an offset into the transposed keys: the
    /// result is the full masked computation's, for windows that reach past either end, head
    /// sizes that are not a multiple of the vector width, and the first query alone.
    #[test]
    fn windowed_attention_equals_the_full_masked_computation() {
        let lengths = [1, 5, 17, 40];
        let mut batch = Batch::default();
        for &len in &lengths {
            batch.push(&vec![0; len], &[]);
        }
        let rows = Rows::new(&batch);
        for isa in [Isa::Portable, Isa::best()] {
            for (heads, head_dim) in [(2, 8), (3, 20)] {
                let qkv = values(rows.total * 3 * heads * head_dim, head_dim as u32);
                for window in [None, Some(0), Some(3), Some(64)] {
                    for first_only in [false, true] {
                        let shape = Shape {
                            heads,
                            head_dim,
                            window,
                            first_only,
                        };
                        let got = attend(isa, &qkv, &rows, &shape);
                        let want = naive(&qkv, &lengths, &shape);
                        assert_eq!(got.len(), want.len());
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (g - w).abs() < 1e-5,
                                "{isa} {heads}x{head_dim} {window:?} {first_only}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Positions past the table are computed as the table's would be.
    #[test]
    fn positions_past_the_table_rotate_as_tabled_ones() {
        let (hidden, len) = (16, 30);
        let mut batch = Batch::default();
        batch.push(&vec![0; len], &[]);
        let rows = Rows::new(&batch);
        let qkv = values(len * 3 * hidden, 7);
        let rotated = |positions: usize| {
            let mut x = qkv.clone();
            Rotary::new(10_000.0, 8, positions).rotate(&mut x, &rows, hidden);
            x
        };
        let (short, long) = (rotated(4), rotated(64));
        assert_eq!(short, long);
        // Queries and keys turn, but at position 0; values do not.
        assert_ne!(long, qkv);
        assert_eq!(long[..2 * hidden], qkv[..2 * hidden]);
        for (token, (a, b)) in long
            .chunks_exact(3 * hidden)
            .zip(qkv.chunks_exact(3 * hidden))
            .enumerate()
        {
            assert_eq!(a[2 * hidden..], b[2 * hidden..], "token {token}");
        }
    }
}
