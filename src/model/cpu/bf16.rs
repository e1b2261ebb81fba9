//! The AVX512-BF16 product: bf16 pairs multiplied and summed into f32 by `vdpbf16ps`, which no
//! compiler emits from plain loops, so this kernel is written with intrinsics.

use super::generic::{self, by_rows, Act, Fused};
use super::Avx512Bf16;
use std::arch::x86_64::*;

#[cfg(test)]
pub const TARGET_FEATURES: &str = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16";

/// Packed columns per panel: two 16-lane registers.
const NR: usize = 32;
/// Rows per tile: 16 accumulators of 32.
const MR: usize = 8;

/// The bf16 twin of [`generic::f32_panels`]: `x` holds each row's bf16 pairs (`kp` per row),
/// `panels` is `[panel][kp][32]`. The token proves the CPU runs the kernel.
pub fn bf16_panels(
    token: Avx512Bf16,
    x: &[u32],
    kp: usize,
    panels: &[u32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    let _ = token;
    // SAFETY: an Avx512Bf16 token exists only where every feature of `TARGET_FEATURES` was
    // detected.
    unsafe { run(x, kp, panels, bias, act, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
fn run(
    x: &[u32],
    kp: usize,
    panels: &[u32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    let m = out.len();
    let width = out.first().map_or(0, |r| r.len());
    let mut acc = [[0f32; NR]; MR];
    for ((p, panel), bias) in panels
        .chunks_exact(kp * NR)
        .enumerate()
        .zip(bias.chunks_exact(NR))
    {
        let bias: &[f32; NR] = bias.try_into().expect("NR values");
        let c0 = p * NR;
        let cols = NR.min(width.saturating_sub(c0));
        let mut row = 0;
        while row < m {
            let rows = (m - row).min(MR);
            macro_rules! call {
                ($r:literal) => {
                    tile::<$r>(x, kp, row, panel, &mut acc)
                };
            }
            by_rows!(rows, call);
            for (i, a) in acc[..rows].iter_mut().enumerate() {
                generic::epilogue::<Fused, NR>(a, bias, act);
                out[row + i][c0..c0 + cols].copy_from_slice(&a[..cols]);
            }
            row += rows;
        }
    }
}

/// Loads 16 u32 (bf16 pairs) from a slice of at least 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
fn load(v: &[u32]) -> __m512bh {
    let v: &[u32; 16] = v[..16].try_into().expect("16 values");
    // SAFETY: `v` is 16 readable u32 (64 bytes); the load has no alignment requirement.
    let bits = unsafe { _mm512_loadu_si512(v.as_ptr().cast()) };
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
fn tile<const R: usize>(x: &[u32], kp: usize, row0: usize, panel: &[u32], acc: &mut [[f32; NR]]) {
    let rows: [&[u32]; R] = std::array::from_fn(|i| &x[(row0 + i) * kp..][..kp]);
    let mut a = [[_mm512_setzero_ps(); 2]; R];
    for (q, b) in panel[..kp * NR].chunks_exact(NR).enumerate() {
        let (b0, b1) = (load(b), load(&b[16..]));
        for i in 0..R {
            // SAFETY: 512 bits of plain data either way.
            let xv = unsafe {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(rows[i][q] as i32))
            };
            a[i][0] = _mm512_dpbf16_ps(a[i][0], xv, b0);
            a[i][1] = _mm512_dpbf16_ps(a[i][1], xv, b1);
        }
    }
    for (dst, v) in acc.iter_mut().zip(a) {
        // SAFETY: 512 bits of plain data either way.
        let halves = unsafe { std::mem::transmute::<[__m512; 2], [f32; NR]>(v) };
        *dst = halves;
    }
}
