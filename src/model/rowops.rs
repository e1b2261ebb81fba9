//! Row-wise AVX-512 helpers for the host encoder ([`super::host`]): scaled vector adds,
//! attention scores and weighted sums, softmax and layer norm over one row. Each needs
//! AVX-512F, which the host encoder has (it exists only with packed kernels).

use super::kernels::{exp, tail_mask as tail};
use std::arch::x86_64::*;

/// `out[i] += s * v[i]` over the shorter length.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn axpy(s: f32, v: &[f32], out: &mut [f32]) {
    let n = v.len().min(out.len());
    let vs = _mm512_set1_ps(s);
    let mut i = 0;
    while i < n {
        let m = tail(n - i);
        let o = out.as_mut_ptr().add(i);
        let sum = _mm512_fmadd_ps(
            vs,
            _mm512_maskz_loadu_ps(m, v.as_ptr().add(i)),
            _mm512_maskz_loadu_ps(m, o),
        );
        _mm512_mask_storeu_ps(o, m, sum);
        i += 16;
    }
}

/// `x = softmax(x)`, shifted by the maximum so large scores cannot overflow.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax(x: &mut [f32]) {
    let n = x.len();
    let mut max = _mm512_set1_ps(f32::MIN);
    let mut i = 0;
    while i < n {
        let m = tail(n - i);
        max = _mm512_mask_max_ps(max, m, max, _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)));
        i += 16;
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    let mut sum = _mm512_setzero_ps();
    i = 0;
    while i < n {
        let m = tail(n - i);
        let p = x.as_mut_ptr().add(i);
        let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p), max));
        sum = _mm512_mask_add_ps(sum, m, sum, e);
        _mm512_mask_storeu_ps(p, m, e);
        i += 16;
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    i = 0;
    while i < n {
        let m = tail(n - i);
        let p = x.as_mut_ptr().add(i);
        _mm512_mask_storeu_ps(p, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p), inv));
        i += 16;
    }
}

/// `x = layer_norm(x + residual) * weight + bias` over one row (mean and variance in two
/// passes, as PyTorch computes them).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn add_layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let n = x.len();
    let mut sum = _mm512_setzero_ps();
    let mut i = 0;
    while i < n {
        let m = tail(n - i);
        let p = x.as_mut_ptr().add(i);
        let mut v = _mm512_maskz_loadu_ps(m, p);
        if let Some(r) = residual {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, r.as_ptr().add(i)));
            _mm512_mask_storeu_ps(p, m, v);
        }
        sum = _mm512_add_ps(sum, v);
        i += 16;
    }
    let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / n as f32);
    let mut var = _mm512_setzero_ps();
    i = 0;
    while i < n {
        let m = tail(n - i);
        let d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)), mean);
        var = _mm512_fmadd_ps(d, d, var);
        i += 16;
    }
    let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(var) / n as f32 + eps).sqrt());
    i = 0;
    while i < n {
        let m = tail(n - i);
        let p = x.as_mut_ptr().add(i);
        let d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p), mean), inv);
        let w = _mm512_maskz_loadu_ps(m, weight.as_ptr().add(i));
        let b = _mm512_maskz_loadu_ps(m, bias.as_ptr().add(i));
        _mm512_mask_storeu_ps(p, m, _mm512_fmadd_ps(d, w, b));
        i += 16;
    }
}

/// Calls `$f::<B>` with B, the number of 16-lane blocks (at most 4) that `$rem` values need,
/// so the accumulators of a const-sized array stay in registers.
macro_rules! by_blocks {
    ($rem:expr, $f:ident, $($arg:expr),*) => {
        match $rem {
            0..=16 => $f::<1>($($arg),*),
            17..=32 => $f::<2>($($arg),*),
            33..=48 => $f::<3>($($arg),*),
            _ => $f::<4>($($arg),*),
        }
    };
}

/// Masks of the B blocks of 16 lanes starting `rem` values before the end.
fn block_masks<const B: usize>(rem: usize) -> [__mmask16; B] {
    std::array::from_fn(|j| tail(rem.saturating_sub(16 * j)))
}

/// One query's attention scores: `out[t] = scale * sum_d q[d] kt[d * len + t]` for every key
/// `t < len`, with the keys stored transposed (`kt` is `[q.len()][len]`) so that 64 scores at
/// a time accumulate in registers instead of one horizontal sum per key.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores(q: &[f32], kt: &[f32], len: usize, scale: f32, out: &mut [f32]) {
    debug_assert!(kt.len() >= q.len() * len && out.len() >= len);
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const B: usize>(
        q: &[f32],
        kt: &[f32],
        len: usize,
        t0: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let m = block_masks::<B>(len - t0);
        let mut acc = [_mm512_setzero_ps(); B];
        for (d, &qd) in q.iter().enumerate() {
            let qd = _mm512_set1_ps(qd);
            let row = kt.as_ptr().add(d * len + t0);
            for j in 0..B {
                let k = _mm512_maskz_loadu_ps(m[j], row.wrapping_add(16 * j));
                acc[j] = _mm512_fmadd_ps(qd, k, acc[j]);
            }
        }
        let scale = _mm512_set1_ps(scale);
        for j in 0..B {
            let o = out.as_mut_ptr().wrapping_add(t0 + 16 * j);
            _mm512_mask_storeu_ps(o, m[j], _mm512_mul_ps(acc[j], scale));
        }
    }
    let mut t0 = 0;
    while t0 < len {
        by_blocks!(len - t0, block, q, kt, len, t0, scale, out);
        t0 += 64;
    }
}

/// `out[d] = sum_t p[t] v[first + t * stride + d]`: attention weights applied to value rows
/// that sit `stride` apart (inside the fused QKV rows), 64 output values at a time in registers.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn weighted_sum(
    p: &[f32],
    v: &[f32],
    first: usize,
    stride: usize,
    out: &mut [f32],
) {
    let hd = out.len();
    debug_assert!(p.is_empty() || v.len() >= first + (p.len() - 1) * stride + hd);
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const B: usize>(
        p: &[f32],
        v: &[f32],
        first: usize,
        stride: usize,
        d0: usize,
        out: &mut [f32],
    ) {
        let m = block_masks::<B>(out.len() - d0);
        let mut acc = [_mm512_setzero_ps(); B];
        for (t, &pt) in p.iter().enumerate() {
            let pt = _mm512_set1_ps(pt);
            let row = v.as_ptr().add(first + t * stride + d0);
            for j in 0..B {
                let x = _mm512_maskz_loadu_ps(m[j], row.wrapping_add(16 * j));
                acc[j] = _mm512_fmadd_ps(pt, x, acc[j]);
            }
        }
        for j in 0..B {
            let o = out.as_mut_ptr().wrapping_add(d0 + 16 * j);
            _mm512_mask_storeu_ps(o, m[j], acc[j]);
        }
    }
    let mut d0 = 0;
    while d0 < hd {
        by_blocks!(hd - d0, block, p, v, first, stride, d0, out);
        d0 += 64;
    }
}
