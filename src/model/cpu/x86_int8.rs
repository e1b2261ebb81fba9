//! Hand-written x86-64 int8 micro-kernels (see `int8.rs` for the scheme): AVX512-VNNI's
//! `vpdpbusd` (8 rows x 32 columns, four k values per instruction and lane, summed into the
//! accumulator), and `vpmaddubsw` + `vpmaddwd` at AVX-512BW (8 x 32) and AVX2 (4 x 16): the
//! same four products per lane in two steps, through an i16 pair sum that the activation
//! codes' range (0..=127) keeps from saturating. The i32 sums stay in range for `k <= int8::MAX_K`.
//!
//! Each entry point takes the token of its instruction set. Inside, every pointer read is
//! bounded by a slice cut, with a checked bound, before the loop.

use super::int8::Task;
use super::tile::{self, by_rows};
use super::x86::{finish, prefetch};
use super::{Avx2, Avx512, Avx512Vnni};
use std::arch::x86_64::*;

// The `target_feature` lists below, for the test that each matches its token's detection.
#[cfg(test)]
pub const VNNI_FEATURES: &str = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni";

/// Runs `$tile::<R, PREFETCH>` on every tile of the task's panels (`$nr` columns, up to `$mr`
/// rows), then dequantizes, adds the bias, activates and stores.
macro_rules! walk {
    ($tile:ident, $task:expr, $nr:expr, $mr:expr, $out:expr) => {{
        let (task, out) = ($task, $out);
        let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
        tile::walk_panels::<i8, $nr>(
            m,
            $mr,
            (task.panels, task.kpad * $nr),
            task.bias,
            width,
            |rows, row, (panel, next), bias, (c0, cols)| {
                macro_rules! call {
                    ($r:literal) => {{
                        let (x, kpad) = (task.x, task.kpad);
                        let acc = match next {
                            Some(next) => $tile::<$r, true>(x, kpad, row, (panel, next)),
                            None => $tile::<$r, false>(x, kpad, row, (panel, &[])),
                        };
                        let values = task.dequant.apply::<$r, $nr>(&acc, row, c0);
                        finish::<$r, $nr>(values, bias, task.act, out, row, (c0, cols))
                    }};
                }
                by_rows!(rows, call)
            },
        )
    }};
}

/// The int8 product over the task's panels (`[panel][kpad / 4][32][4]`) with `vpdpbusd`;
/// u8 codes, `kpad` (a multiple of 4) per row.
pub fn vnni(token: Avx512Vnni, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx512Vnni token exists only where every feature enabled on `vnni_panels`
    // was detected.
    unsafe { vnni_panels(task, out) }
}

/// The int8 product over the task's panels (`[panel][kpad / 4][32][4]`) with `vpmaddubsw` at
/// AVX-512BW; u8 codes within 0..=127, `kpad` (a multiple of 4) per row.
pub fn maddubs512(token: Avx512, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx512 token exists only where every feature enabled on `maddubs512_panels`
    // was detected.
    unsafe { maddubs512_panels(task, out) }
}

/// As [`maddubs512`] at AVX2, over `[panel][kpad / 4][16][4]` panels.
pub fn maddubs256(token: Avx2, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx2 token exists only where AVX2 and FMA were detected.
    unsafe { maddubs256_panels(task, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni")]
fn vnni_panels(task: &Task, out: &mut [&mut [f32]]) {
    walk!(vnni_tile, task, 32, 8, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn maddubs512_panels(task: &Task, out: &mut [&mut [f32]]) {
    walk!(maddubs512_tile, task, 32, 8, out)
}

/// 4 rows: 8 accumulators, 2 weight registers, the ones, a broadcast and the products fit
/// AVX2's 16 registers without spills (6 rows, as the f32 kernel has, would not).
#[target_feature(enable = "avx2,fma")]
fn maddubs256_panels(task: &Task, out: &mut [&mut [f32]]) {
    walk!(maddubs256_tile, task, 16, 4, out)
}

/// The accumulators of a tile as plain i32 values.
#[inline(always)]
fn sums<V: Copy, const R: usize, const NR: usize>(a: &[[V; 2]; R]) -> [[i32; NR]; R] {
    assert_eq!(
        std::mem::size_of::<[[V; 2]; R]>(),
        std::mem::size_of::<[[i32; NR]; R]>()
    );
    // SAFETY: the sizes are equal (checked above, and constant-folded); both are plain data
    // (vector registers of i32 lanes and arrays of i32) with no invalid bit patterns, and
    // `transmute_copy` reads unaligned.
    unsafe { std::mem::transmute_copy(a) }
}

/// `R` rows of u8 codes (`kpad` each, from `row0`) times one `[kpad / 4][32][4]` panel:
/// the i32 sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni")]
fn vnni_tile<const R: usize, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[i32; 32]; R] {
    // Checked bounds for every read below: R rows of kpad codes, kpad / 4 quads of 32 x 4.
    let (x, panel) = (&x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * 32]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let mut a = [[_mm512_setzero_si512(); 2]; R];
    for q in 0..kpad / 4 {
        if PREFETCH {
            prefetch(next, q * 128);
            prefetch(next, q * 128 + 64);
        }
        // SAFETY: q < kpad / 4, so `bp + 128 q + 128 <= panel.len()`, and
        // `i kpad + 4 q + 4 <= R kpad = x.len()`.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_si512(bp.add(q * 128).cast()),
                _mm512_loadu_si512(bp.add(q * 128 + 64).cast()),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above; an unaligned read of 4 codes.
            let xv = _mm512_set1_epi32(unsafe {
                xp.add(i * kpad + 4 * q).cast::<i32>().read_unaligned()
            });
            acc[0] = _mm512_dpbusd_epi32(acc[0], xv, b0);
            acc[1] = _mm512_dpbusd_epi32(acc[1], xv, b1);
        }
    }
    sums(&a)
}

/// `R` rows of u8 codes within 0..=127 times one `[kpad / 4][32][4]` panel: `vpmaddubsw`
/// sums each pair of products in i16 (at most 127 * 127 * 2 = 32,258 in magnitude, so it
/// never saturates), `vpmaddwd` by ones sums the pairs into i32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn maddubs512_tile<const R: usize, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[i32; 32]; R] {
    // Checked bounds for every read below: R rows of kpad codes, kpad / 4 quads of 32 x 4.
    let (x, panel) = (&x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * 32]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let ones = _mm512_set1_epi16(1);
    let mut a = [[_mm512_setzero_si512(); 2]; R];
    for q in 0..kpad / 4 {
        if PREFETCH {
            prefetch(next, q * 128);
            prefetch(next, q * 128 + 64);
        }
        // SAFETY: q < kpad / 4, so `bp + 128 q + 128 <= panel.len()`, and
        // `i kpad + 4 q + 4 <= R kpad = x.len()`.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_si512(bp.add(q * 128).cast()),
                _mm512_loadu_si512(bp.add(q * 128 + 64).cast()),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above; an unaligned read of 4 codes.
            let xv = _mm512_set1_epi32(unsafe {
                xp.add(i * kpad + 4 * q).cast::<i32>().read_unaligned()
            });
            let p0 = _mm512_madd_epi16(_mm512_maddubs_epi16(xv, b0), ones);
            let p1 = _mm512_madd_epi16(_mm512_maddubs_epi16(xv, b1), ones);
            acc[0] = _mm512_add_epi32(acc[0], p0);
            acc[1] = _mm512_add_epi32(acc[1], p1);
        }
    }
    sums(&a)
}

/// As [`maddubs512_tile`] in 256-bit registers, over a `[kpad / 4][16][4]` panel.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn maddubs256_tile<const R: usize, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[i32; 16]; R] {
    let (x, panel) = (&x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * 16]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut a = [[_mm256_setzero_si256(); 2]; R];
    for q in 0..kpad / 4 {
        if PREFETCH {
            prefetch(next, q * 64);
        }
        // SAFETY: q < kpad / 4, so `bp + 64 q + 64 <= panel.len()` and
        // `i kpad + 4 q + 4 <= x.len()`.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_si256(bp.add(q * 64).cast()),
                _mm256_loadu_si256(bp.add(q * 64 + 32).cast()),
            )
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: as above; an unaligned read of 4 codes.
            let xv = _mm256_set1_epi32(unsafe {
                xp.add(i * kpad + 4 * q).cast::<i32>().read_unaligned()
            });
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(xv, b0), ones);
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(xv, b1), ones);
            acc[0] = _mm256_add_epi32(acc[0], p0);
            acc[1] = _mm256_add_epi32(acc[1], p1);
        }
    }
    sums(&a)
}
