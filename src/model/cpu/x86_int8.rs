//! Hand-written x86-64 int8 micro-kernels (see `int8.rs` for the scheme): AVX512-VNNI's
//! `vpdpbusd` (8 rows x 32 columns, four k values per instruction and lane, summed into the
//! accumulator), and `vpmaddubsw` + `vpmaddwd` at AVX-512BW (8 x 32) and AVX2 (4 x 16): the
//! same four products per lane in two instructions, through an i16 pair sum that the
//! activation codes' range (0..=127) keeps from saturating, and, where the weights are
//! bounded for it, two such sums added in i16 before each `vpmaddwd`. The i32 sums stay in
//! range for `k <= int8::MAX_K`.
//!
//! Each entry point takes the token of its instruction set. Inside, every pointer read is
//! bounded by a slice cut, with a checked bound, before the loop.

use super::generic::{self, Fused};
use super::int8::Task;
use super::tile::{self, by_rows};
use super::x86::{prefetch, tile_values};
use super::{Avx2, Avx512, Avx512Vnni};
use std::arch::x86_64::*;

// The `target_feature` lists below, for the test that each matches its token's detection.
#[cfg(test)]
pub const VNNI_FEATURES: &str = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni";

/// Runs `$tile::<R, $two, PREFETCH>` on every tile of the task's panels (`$nr` columns, up
/// to `$mr` rows), then `$finish` turns its sums into the outputs.
macro_rules! walk {
    ($tile:ident, $two:expr, $finish:ident, $task:expr, $nr:expr, $mr:expr, $out:expr) => {{
        let (task, out) = ($task, $out);
        let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
        tile::walk_panels::<i8, $nr>(
            m,
            $mr,
            (task.panels, task.kpad * $nr),
            task.bias,
            width,
            |rows, row, (panel, next), bias, cols| {
                macro_rules! call {
                    ($r:literal) => {{
                        let (x, kpad) = (task.x, task.kpad);
                        let acc = match next {
                            Some(next) => $tile::<$r, $two, true>(x, kpad, row, (panel, next)),
                            None => $tile::<$r, $two, false>(x, kpad, row, (panel, &[])),
                        };
                        $finish::<$r>(&acc, task, bias, out, row, cols)
                    }};
                }
                by_rows!(rows, call)
            },
        )
    }};
}

/// Defines `$name::<R>(acc, task, bias, out, row0, (c0, cols))`, which turns a tile's i32
/// sums (`R` rows of two `$vi` registers) into outputs without leaving the registers:
/// `(sum - zero * column sum) * (row scale * column scale) + bias` (the same operations, in
/// the same order, as `int8::Dequant::apply` and `x86::finish`, so the same values), then
/// the activation, if any, over the whole tile, and the store. Through plain arrays, as
/// those two compute it, the tile's sums and values went through memory three times
/// (`memmove` calls among them): 15-20% of an avx2 int8 product, whose tiles are short
/// (k = 384 is ~750 cycles of `vpmaddubsw`). Handing the dequantized registers to
/// `x86::finish` instead (through an array, as the f32 kernels do) measured 5% slower at
/// avx2 and 10-15% slower with VNNI (`cpu_time`, alternated), hence the stores here.
macro_rules! dequant_finish {
    (
        $name:ident, $features:literal, $nr:literal, $vi:ty, $vf:ty,
        $loadu_ps:ident, $loadu_si:ident, $storeu_ps:ident, $set1_ps:ident, $set1_epi32:ident,
        $mullo:ident, $sub:ident, $cvt:ident, $mul:ident, $add:ident
    ) => {
        #[inline]
        #[target_feature(enable = $features)]
        fn $name<const R: usize>(
            acc: &[[$vi; 2]; R],
            task: &Task,
            bias: &[f32; $nr],
            out: &mut [&mut [f32]],
            row0: usize,
            (c0, cols): (usize, usize),
        ) {
            const HALF: usize = $nr / 2;
            let d = &task.dequant;
            let rows: &[(f32, i32); R] = d.rows[row0..row0 + R].try_into().expect("R rows");
            let scales: &[f32; $nr] = d.scales[c0..c0 + $nr].try_into().expect("a panel");
            let sums: &[i32; $nr] = d.sums[c0..c0 + $nr].try_into().expect("a panel");
            // SAFETY: each read is HALF values at 0 or HALF of a `$nr`-value array.
            let (col_scale, col_sum, bias) = unsafe {
                (
                    [
                        $loadu_ps(scales.as_ptr()),
                        $loadu_ps(scales.as_ptr().add(HALF)),
                    ],
                    [
                        $loadu_si(sums.as_ptr().cast()),
                        $loadu_si(sums.as_ptr().add(HALF).cast()),
                    ],
                    [$loadu_ps(bias.as_ptr()), $loadu_ps(bias.as_ptr().add(HALF))],
                )
            };
            let mut values = [[$set1_ps(0.0); 2]; R];
            for ((v, a), &(scale, zero)) in values.iter_mut().zip(acc).zip(rows) {
                let (scale, zero) = ($set1_ps(scale), $set1_epi32(zero));
                for h in 0..2 {
                    // Wrapping i32 operations, which never wrap here (see `int8::MAX_K`).
                    let sum = $sub(a[h], $mullo(zero, col_sum[h]));
                    let value = $mul($cvt(sum), $mul(scale, col_scale[h]));
                    v[h] = $add(value, bias[h]);
                }
            }
            if let Some(act) = task.act {
                let mut tile = tile_values::<$vf, R, $nr>(&values);
                generic::activate::<Fused>(tile.as_flattened_mut(), act);
                for (i, row) in tile.iter().enumerate() {
                    tile::store(&mut out[row0 + i][c0..c0 + cols], row);
                }
                return;
            }
            for (i, v) in values.iter().enumerate() {
                match <&mut [f32; $nr]>::try_from(&mut out[row0 + i][c0..c0 + cols]) {
                    // SAFETY: two stores of HALF values at 0 and HALF of a `$nr`-value array.
                    Ok(full) => unsafe {
                        $storeu_ps(full.as_mut_ptr(), v[0]);
                        $storeu_ps(full.as_mut_ptr().add(HALF), v[1]);
                    },
                    Err(_) => {
                        let row = tile_values::<$vf, 1, $nr>(&[*v]);
                        tile::store(&mut out[row0 + i][c0..c0 + cols], &row[0]);
                    }
                }
            }
        }
    };
}

dequant_finish!(
    finish512,
    "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma",
    32,
    __m512i,
    __m512,
    _mm512_loadu_ps,
    _mm512_loadu_si512,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_set1_epi32,
    _mm512_mullo_epi32,
    _mm512_sub_epi32,
    _mm512_cvtepi32_ps,
    _mm512_mul_ps,
    _mm512_add_ps
);

dequant_finish!(
    finish256,
    "avx2,fma",
    16,
    __m256i,
    __m256,
    _mm256_loadu_ps,
    _mm256_loadu_si256,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_set1_epi32,
    _mm256_mullo_epi32,
    _mm256_sub_epi32,
    _mm256_cvtepi32_ps,
    _mm256_mul_ps,
    _mm256_add_ps
);

/// The int8 product over the task's panels (`[panel][kpad / 4][32][4]`) with `vpdpbusd`;
/// u8 codes, `kpad` (a multiple of 4) per row.
pub(super) fn vnni(token: Avx512Vnni, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx512Vnni token exists only where every feature enabled on `vnni_panels`
    // was detected.
    unsafe { vnni_panels(task, out) }
}

/// The int8 product over the task's panels (`[panel][kpad / 4][32][4]`) with `vpmaddubsw` at
/// AVX-512BW; u8 codes within 0..=127, `kpad` (a multiple of 4) per row; `two_steps` where
/// the weights are bounded for it (`int8::bound_pair_groups`).
pub(super) fn maddubs512(token: Avx512, two_steps: bool, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx512 token exists only where every feature enabled on `maddubs512_panels`
    // was detected.
    unsafe {
        if two_steps {
            maddubs512_panels::<true>(task, out)
        } else {
            maddubs512_panels::<false>(task, out)
        }
    }
}

/// As [`maddubs512`] at AVX2, over `[panel][kpad / 4][16][4]` panels.
pub(super) fn maddubs256(token: Avx2, two_steps: bool, task: &Task, out: &mut [&mut [f32]]) {
    let _ = token;
    // SAFETY: an Avx2 token exists only where AVX2 and FMA were detected.
    unsafe {
        if two_steps {
            maddubs256_panels::<true>(task, out)
        } else {
            maddubs256_panels::<false>(task, out)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni")]
fn vnni_panels(task: &Task, out: &mut [&mut [f32]]) {
    walk!(vnni_tile, false, finish512, task, 32, 8, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn maddubs512_panels<const TWO: bool>(task: &Task, out: &mut [&mut [f32]]) {
    walk!(maddubs512_tile, TWO, finish512, task, 32, 8, out)
}

/// 4 rows: 8 accumulators, 2 weight registers, the ones, a broadcast and the products fit
/// AVX2's 16 registers without spills (6 rows, as the f32 kernel has, would not).
#[target_feature(enable = "avx2,fma")]
fn maddubs256_panels<const TWO: bool>(task: &Task, out: &mut [&mut [f32]]) {
    walk!(maddubs256_tile, TWO, finish256, task, 16, 4, out)
}

/// `R` rows of u8 codes (`kpad` each, from `row0`) times one `[kpad / 4][32][4]` panel:
/// the i32 sums (`TWO` is unused: `vpdpbusd` widens as it adds).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni")]
fn vnni_tile<const R: usize, const TWO: bool, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[__m512i; 2]; R] {
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
    a
}

/// Runs `step(q, two)` over `steps` k steps: with `TWO`, two at a time (`two` true, from
/// `q`), the last of an odd count alone (its pair sums alone stay within 127 * 254);
/// otherwise one at a time.
#[inline(always)]
fn by_steps<const TWO: bool>(steps: usize, mut step: impl FnMut(usize, bool)) {
    let mut q = 0;
    while TWO && q + 1 < steps {
        step(q, true);
        q += 2;
    }
    while q < steps {
        step(q, false);
        q += 1;
    }
}

/// `R` rows of u8 codes within 0..=127 times one `[kpad / 4][32][4]` panel: `vpmaddubsw`
/// sums each pair of products in i16 (at most 127 * 127 * 2 = 32,258), and `vpmaddwd` by
/// ones sums the lanes into i32. With `TWO`, `vpaddw` first adds the next step's pair (the
/// weights' bound, `int8::bound_pair_groups`, keeps the two within 127 * 258 = 32,766, so
/// nothing saturates or wraps): three multiplier instructions per two steps instead of four.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn maddubs512_tile<const R: usize, const TWO: bool, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[__m512i; 2]; R] {
    // Checked bounds for every read below: R rows of kpad codes, kpad / 4 quads of 32 x 4.
    let (x, panel) = (&x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * 32]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let ones = _mm512_set1_epi16(1);
    let mut a = [[_mm512_setzero_si512(); 2]; R];
    let steps = kpad / 4;
    let step = |q: usize, two: bool| {
        if PREFETCH {
            for line in 0..if two { 4 } else { 2 } {
                prefetch(next, q * 128 + line * 64);
            }
        }
        // SAFETY: q (and q + 1 when `two`) < kpad / 4, so every weight read ends within
        // `bp + 128 (q + 2) <= panel.len()`.
        let load = |at: usize| unsafe { _mm512_loadu_si512(bp.add(at).cast()) };
        let (b0, b1) = (load(q * 128), load(q * 128 + 64));
        let (c0, c1) = if two {
            (load(q * 128 + 128), load(q * 128 + 192))
        } else {
            (_mm512_setzero_si512(), _mm512_setzero_si512())
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: `i kpad + 4 q + 8 <= R kpad = x.len()` when `two`, `+ 4` otherwise;
            // unaligned reads of 4 codes.
            let code = |at: usize| unsafe { xp.add(i * kpad + at).cast::<i32>().read_unaligned() };
            let xv = _mm512_set1_epi32(code(4 * q));
            let mut p0 = _mm512_maddubs_epi16(xv, b0);
            let mut p1 = _mm512_maddubs_epi16(xv, b1);
            if two {
                let yv = _mm512_set1_epi32(code(4 * q + 4));
                p0 = _mm512_add_epi16(p0, _mm512_maddubs_epi16(yv, c0));
                p1 = _mm512_add_epi16(p1, _mm512_maddubs_epi16(yv, c1));
            }
            acc[0] = _mm512_add_epi32(acc[0], _mm512_madd_epi16(p0, ones));
            acc[1] = _mm512_add_epi32(acc[1], _mm512_madd_epi16(p1, ones));
        }
    };
    by_steps::<TWO>(steps, step);
    a
}

/// As [`maddubs512_tile`] in 256-bit registers, over a `[kpad / 4][16][4]` panel.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn maddubs256_tile<const R: usize, const TWO: bool, const PREFETCH: bool>(
    x: &[u8],
    kpad: usize,
    row0: usize,
    (panel, next): (&[i8], &[i8]),
) -> [[__m256i; 2]; R] {
    let (x, panel) = (&x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * 16]);
    let (xp, bp) = (x.as_ptr(), panel.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut a = [[_mm256_setzero_si256(); 2]; R];
    let steps = kpad / 4;
    let step = |q: usize, two: bool| {
        if PREFETCH {
            for line in 0..if two { 2 } else { 1 } {
                prefetch(next, q * 64 + line * 64);
            }
        }
        // SAFETY: q (and q + 1 when `two`) < kpad / 4, so every weight read ends within
        // `bp + 64 (q + 2) <= panel.len()`.
        let load = |at: usize| unsafe { _mm256_loadu_si256(bp.add(at).cast()) };
        let (b0, b1) = (load(q * 64), load(q * 64 + 32));
        let (c0, c1) = if two {
            (load(q * 64 + 64), load(q * 64 + 96))
        } else {
            (_mm256_setzero_si256(), _mm256_setzero_si256())
        };
        for (i, acc) in a.iter_mut().enumerate() {
            // SAFETY: `i kpad + 4 q + 8 <= x.len()` when `two`, `+ 4` otherwise; unaligned
            // reads of 4 codes.
            let code = |at: usize| unsafe { xp.add(i * kpad + at).cast::<i32>().read_unaligned() };
            let xv = _mm256_set1_epi32(code(4 * q));
            let mut p0 = _mm256_maddubs_epi16(xv, b0);
            let mut p1 = _mm256_maddubs_epi16(xv, b1);
            if two {
                let yv = _mm256_set1_epi32(code(4 * q + 4));
                p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(yv, c0));
                p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(yv, c1));
            }
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
        }
    };
    by_steps::<TWO>(steps, step);
    a
}
