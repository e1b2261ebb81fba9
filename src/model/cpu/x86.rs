//! Hand-written x86-64 micro-kernels for the packed products: f32 at avx512 (8 rows x 32
//! columns: 16 of the 32 zmm registers accumulate) and at avx2 (6 x 16: 12 of 16 ymm), and
//! bf16 pairs with AVX512-BF16's `vdpbf16ps` (8 x 32), which no compiler emits on its own.
//! The plain-loop kernel (`tile::tile`) computes the same thing, but the compiler's code
//! for it was slower here and changed shape between builds (BENCHMARKS.md).
//!
//! Each entry point takes the token of its instruction set, so it cannot run on a CPU without
//! it. Inside, every pointer read is bounded by a slice that was cut, with a checked bound,
//! before the loop.

use super::generic::{self, Act, Fused};
use super::tile::{self, by_rows};
use super::{Avx2, Avx512, Avx512Bf16};
use std::arch::x86_64::*;

// The `target_feature` lists below, for the test that each matches its token's detection.
#[cfg(test)]
pub const AVX512_FEATURES: &str = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma";
#[cfg(test)]
pub const AVX2_FEATURES: &str = "avx2,fma";
#[cfg(test)]
pub const BF16_FEATURES: &str = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16";

/// Packed columns per panel of the avx512 kernels (f32 and bf16): two 16-lane registers.
pub(super) const AVX512_NR: usize = 32;
/// Packed columns per panel of the avx2 kernel: two 8-lane registers.
pub(super) const AVX2_NR: usize = 16;

/// The f32 product over this task's panels (`[panel][k][32]`) at avx512; see
/// [`tile::f32_panels`] for the arguments.
pub(super) fn avx512_f32(
    token: Avx512,
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    let _ = token;
    // SAFETY: an Avx512 token exists only where every feature enabled on `avx512_panels`
    // was detected.
    unsafe { avx512_panels(x, k, panels, bias, act, out) }
}

/// The f32 product over this task's panels (`[panel][k][16]`) at avx2.
pub(super) fn avx2_f32(
    token: Avx2,
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    let _ = token;
    // SAFETY: an Avx2 token exists only where AVX2 and FMA were detected.
    unsafe { avx2_panels(x, k, panels, bias, act, out) }
}

/// The bf16 product: `x` holds each row's bf16 pairs (`kp` per row, see
/// `Isa::to_bf16_pairs`), `panels` is `[panel][kp][32]`.
pub(super) fn avx512_bf16(
    token: Avx512Bf16,
    x: &[u32],
    kp: usize,
    panels: &[u32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    let _ = token;
    // SAFETY: an Avx512Bf16 token exists only where every feature enabled on `bf16_panels`
    // was detected.
    unsafe { bf16_panels(x, kp, panels, bias, act, out) }
}

/// Runs `$tile::<R>` on every tile of this task's panels, `R` a constant.
macro_rules! walk {
    ($tile:ident, $x:expr, $k:expr, $panels:expr, $nr:expr, $mr:expr, $bias:expr, $act:expr, $out:expr) => {{
        let (m, width) = ($out.len(), $out.first().map_or(0, |r| r.len()));
        tile::walk_panels::<_, $nr>(
            m,
            $mr,
            ($panels, $k * $nr),
            $bias,
            width,
            |rows, row, (panel, next), bias, cols| {
                macro_rules! call {
                    ($r:literal) => {
                        match next {
                            Some(next) => $tile::<$r, true>(
                                $x,
                                $k,
                                row,
                                (panel, next),
                                bias,
                                $act,
                                $out,
                                cols,
                            ),
                            None => $tile::<$r, false>(
                                $x,
                                $k,
                                row,
                                (panel, &[]),
                                bias,
                                $act,
                                $out,
                                cols,
                            ),
                        }
                    };
                }
                by_rows!(rows, call)
            },
        )
    }};
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn avx512_panels(
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    walk!(avx512_tile, x, k, panels, AVX512_NR, 8, bias, act, out)
}

#[target_feature(enable = "avx2,fma")]
fn avx2_panels(
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    walk!(avx2_tile, x, k, panels, AVX2_NR, 6, bias, act, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
fn bf16_panels(
    x: &[u32],
    kp: usize,
    panels: &[u32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    walk!(bf16_tile, x, kp, panels, AVX512_NR, 8, bias, act, out)
}

/// Asks for the cache line holding `next[i]` to be brought into L2, when `i` is in bounds.
/// The first tile of each panel prefetches the next panel this way, so that with a few rows
/// (one short sentence) the next panel's weights arrive while this one's later tiles compute.
#[inline(always)]
pub(super) fn prefetch<T>(next: &[T], i: usize) {
    if let Some(v) = next.get(i) {
        // SAFETY: a prefetch is a hint that never faults; the address is of a live element.
        unsafe { _mm_prefetch::<_MM_HINT_T1>((v as *const T).cast()) }
    }
}

/// Bias, activation and store of a whole tile, as the plain-loop kernel computes them. The
/// activation runs over all of the tile's rows at once, so its long dependency chains (a
/// polynomial and a division per value for GELU) interleave instead of running row by row:
/// row by row it cost 12% of the FFN-in product, against 4% for the old hand-written epilogue.
#[inline(always)]
pub(super) fn finish<const R: usize, const NR: usize>(
    mut acc: [[f32; NR]; R],
    bias: &[f32; NR],
    act: Option<Act>,
    out: &mut [&mut [f32]],
    row0: usize,
    (c0, cols): (usize, usize),
) {
    let Some(act) = act else {
        // Without an activation, row by row keeps the values in registers.
        for (i, mut row) in acc.into_iter().enumerate() {
            tile::epilogue::<Fused, NR>(&mut row, bias, None);
            tile::store(&mut out[row0 + i][c0..c0 + cols], &row);
        }
        return;
    };
    for row in acc.iter_mut() {
        for j in 0..NR {
            row[j] += bias[j];
        }
    }
    generic::activate::<Fused>(acc.as_flattened_mut(), act);
    for (i, row) in acc.iter().enumerate() {
        tile::store(&mut out[row0 + i][c0..c0 + cols], row);
    }
}

mod sealed {
    pub(crate) trait Sealed {}
    impl Sealed for super::__m256 {}
    impl Sealed for super::__m512 {}
}

/// Vector registers of f32 lanes, and nothing else (sealed): plain data whose every bit
/// pattern is a valid array of f32, which [`tile_values`] relies on.
pub(super) trait F32Lanes: Copy + sealed::Sealed {}
impl F32Lanes for __m256 {}
impl F32Lanes for __m512 {}

/// The accumulators of a tile as plain floats.
#[inline(always)]
pub(super) fn tile_values<V: F32Lanes, const R: usize, const NR: usize>(
    a: &[[V; 2]; R],
) -> [[f32; NR]; R] {
    assert_eq!(
        std::mem::size_of::<[[V; 2]; R]>(),
        std::mem::size_of::<[[f32; NR]; R]>()
    );
    // SAFETY: the sizes are equal (checked above, and constant-folded); both are plain data
    // (`V` can only be a vector register of f32 lanes, by the sealed `F32Lanes`, and arrays of
    // f32) with no invalid bit patterns, and `transmute_copy` reads unaligned.
    unsafe { std::mem::transmute_copy(a) }
}

/// `R` rows of `x` (row-major, `k` wide, from `row0`) times one `[k][32]` panel.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn avx512_tile<const R: usize, const PREFETCH: bool>(
    x: &[f32],
    k: usize,
    row0: usize,
    (panel, next): (&[f32], &[f32]),
    bias: &[f32; AVX512_NR],
    act: Option<Act>,
    out: &mut [&mut [f32]],
    (c0, cols): (usize, usize),
) {
    // Checked bounds for every read below: R rows of k, and k rows of 32.
    let (x, panel) = (&x[row0 * k..(row0 + R) * k], &panel[..k * AVX512_NR]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let mut a = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..k {
        if PREFETCH {
            prefetch(next, kk * AVX512_NR);
            prefetch(next, kk * AVX512_NR + 16);
        }
        // SAFETY: kk < k, so `bp + 32 kk + 32 <= panel.len()` and `i k + kk < R k = x.len()`.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(bp.add(kk * AVX512_NR)),
                _mm512_loadu_ps(bp.add(kk * AVX512_NR + 16)),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above.
            let xv = _mm512_set1_ps(unsafe { *xp.add(i * k + kk) });
            acc[0] = _mm512_fmadd_ps(xv, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(xv, b1, acc[1]);
        }
    }
    finish::<R, AVX512_NR>(tile_values(&a), bias, act, out, row0, (c0, cols));
}

/// `R` rows of `x` times one `[k][16]` panel, in 256-bit registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn avx2_tile<const R: usize, const PREFETCH: bool>(
    x: &[f32],
    k: usize,
    row0: usize,
    (panel, next): (&[f32], &[f32]),
    bias: &[f32; AVX2_NR],
    act: Option<Act>,
    out: &mut [&mut [f32]],
    (c0, cols): (usize, usize),
) {
    let (x, panel) = (&x[row0 * k..(row0 + R) * k], &panel[..k * AVX2_NR]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let mut a = [[_mm256_setzero_ps(); 2]; R];
    for kk in 0..k {
        if PREFETCH {
            prefetch(next, kk * AVX2_NR);
        }
        // SAFETY: kk < k, so `bp + 16 kk + 16 <= panel.len()` and `i k + kk < R k = x.len()`.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bp.add(kk * AVX2_NR)),
                _mm256_loadu_ps(bp.add(kk * AVX2_NR + 8)),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above.
            let xv = _mm256_set1_ps(unsafe { *xp.add(i * k + kk) });
            acc[0] = _mm256_fmadd_ps(xv, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(xv, b1, acc[1]);
        }
    }
    finish::<R, AVX2_NR>(tile_values(&a), bias, act, out, row0, (c0, cols));
}

/// `R` rows of bf16 pairs (`kp` per row) times one `[kp][32]` panel of pairs, summed in f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
#[allow(clippy::too_many_arguments)]
fn bf16_tile<const R: usize, const PREFETCH: bool>(
    x: &[u32],
    kp: usize,
    row0: usize,
    (panel, next): (&[u32], &[u32]),
    bias: &[f32; AVX512_NR],
    act: Option<Act>,
    out: &mut [&mut [f32]],
    (c0, cols): (usize, usize),
) {
    let (x, panel) = (&x[row0 * kp..(row0 + R) * kp], &panel[..kp * AVX512_NR]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let mut a = [[_mm512_setzero_ps(); 2]; R];
    for q in 0..kp {
        if PREFETCH {
            prefetch(next, q * AVX512_NR);
            prefetch(next, q * AVX512_NR + 16);
        }
        // SAFETY: q < kp bounds both reads as in `avx512_tile`; the u32 pairs are 512 bits of
        // plain data either way.
        let (b0, b1) = unsafe {
            (
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    bp.add(q * AVX512_NR).cast(),
                )),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    bp.add(q * AVX512_NR + 16).cast(),
                )),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above.
            let xv = unsafe {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *xp.add(i * kp + q) as i32
                ))
            };
            acc[0] = _mm512_dpbf16_ps(acc[0], xv, b0);
            acc[1] = _mm512_dpbf16_ps(acc[1], xv, b1);
        }
    }
    finish::<R, AVX512_NR>(tile_values(&a), bias, act, out, row0, (c0, cols));
}
