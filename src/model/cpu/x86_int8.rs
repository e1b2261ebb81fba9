//! Hand-written x86-64 int8 micro-kernels (see `int8.rs` for the scheme): AVX512-VNNI's
//! `vpdpbusd` (8 rows x 32 columns, four k values per instruction and lane, summed into the
//! accumulator), and `vpmaddubsw` + `vpmaddwd` at AVX-512BW (8 x 32) and AVX2 (4 x 16): the
//! same four products per lane in two instructions, through an i16 pair sum that the
//! activation codes' range (0..=127) keeps from saturating, and, where the weights are
//! bounded for it, two such sums added in i16 before each `vpmaddwd`. The i32 sums stay in
//! range for `k <= int8::MAX_K`.
//!
//! All three come from one definition, [`int8_kernel!`], over the instruction set's
//! operations. Each is a `#[target_feature]` function, called (in `kernel.rs`) only with the
//! token of its instruction set in hand. Inside, every pointer read is bounded by a slice
//! cut, with a checked bound, before the loop.

use super::generic;
use super::int8::{Int8Task, GROUP};
use super::math::Fused;
use super::tile;
use super::x86::{features, prefetch, tile_values, walk, AVX2_NR, AVX512_NR};
use std::arch::x86_64::*;

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
        pub(super) fn $name<const R: usize>(
            acc: &[[$vi; 2]; R],
            task: &Int8Task,
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

/// Defines `$name(task, two_steps, out)`, the int8 product over a task's panels
/// (`[panel][k / 4][$nr][4]` weight codes) with u8 activation codes (`k`, a multiple of 4,
/// per row), compiled for `$features`: for each tile of up to `$mr` rows and each k step
/// (four k values), two `$v` registers of weight codes (`load: |p|`, from a pointer to
/// `2 * $nr` of them) and, per row, the step's four codes broadcast to every lane
/// (`broadcast: |c|`, from them as an i32), summed into the i32 accumulators as `one: |acc,
/// x, w|` computes; with `two_steps` (weights bounded for it, `int8::bound_pair_groups`), two
/// steps at a time as `two: |acc, (x, w), (y, u)|` computes. Then `$finish` dequantizes, adds the
/// bias, applies the activation and stores.
macro_rules! int8_kernel {
    (
        $(#[$doc:meta])*
        fn $name:ident for $features:literal, $nr:ident x $mr:literal,
        accumulating $v:ty = $zero:expr, finished by $finish:ident;
        load: |$p:ident| $load:expr,
        broadcast: |$c:ident| $broadcast:expr,
        one: |$a1:ident, $x1:ident, $w1:ident| $one:expr,
        two: |$a2:ident, ($x2:ident, $w2:ident), ($y2:ident, $u2:ident)| $two:expr $(,)?
    ) => {
        features!($name, $features);

        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(super) fn $name(task: &Int8Task, two_steps: bool, out: &mut [&mut [f32]]) {
            /// `R` rows of codes (from `row0`) times one panel: the tile's i32 sums.
            #[inline]
            #[target_feature(enable = $features)]
            fn tile<const R: usize, const TWO: bool, const PREFETCH: bool>(
                task: &Int8Task,
                row0: usize,
                (panel, next): (&[i8], &[i8]),
            ) -> [[$v; 2]; R] {
                // Weight codes per k step, and per register.
                const STEP: usize = $nr * GROUP;
                const HALF: usize = STEP / 2;
                let kpad = task.k;
                // Checked bounds for every read below: R rows of kpad codes, kpad / 4 steps.
                let (x, panel) = (&task.x[row0 * kpad..(row0 + R) * kpad], &panel[..kpad * $nr]);
                let (xp, bp) = (x.as_ptr(), panel.as_ptr());
                let mut a = [[$zero; 2]; R];
                let step = |q: usize, two: bool| {
                    if PREFETCH {
                        for line in 0..(if two { 2 } else { 1 }) * STEP / 64 {
                            prefetch(next, q * STEP + line * 64);
                        }
                    }
                    let load = |at: usize| {
                        // SAFETY: q (and q + 1 when `two`) < kpad / 4, so every weight read
                        // ends within `bp + STEP (q + 2) <= panel.len()`; the loads are
                        // unaligned.
                        unsafe {
                            let $p = bp.add(at);
                            $load
                        }
                    };
                    let (b0, b1) = (load(q * STEP), load(q * STEP + HALF));
                    let (c0, c1) = if two {
                        (load(q * STEP + STEP), load(q * STEP + STEP + HALF))
                    } else {
                        ($zero, $zero)
                    };
                    for (i, acc) in a.iter_mut().enumerate() {
                        let code = |at: usize| {
                            // SAFETY: `i kpad + 4 q + 8 <= R kpad = x.len()` when `two`, `+ 4`
                            // otherwise; unaligned reads of 4 codes.
                            unsafe { xp.add(i * kpad + at).cast::<i32>().read_unaligned() }
                        };
                        let xv = { let $c = code(4 * q); $broadcast };
                        if two {
                            let yv = { let $c = code(4 * q + 4); $broadcast };
                            let ($x2, $y2) = (xv, yv);
                            acc[0] = { let ($a2, $w2, $u2) = (acc[0], b0, c0); $two };
                            acc[1] = { let ($a2, $w2, $u2) = (acc[1], b1, c1); $two };
                        } else {
                            let $x1 = xv;
                            acc[0] = { let ($a1, $w1) = (acc[0], b0); $one };
                            acc[1] = { let ($a1, $w1) = (acc[1], b1); $one };
                        }
                    }
                };
                by_steps::<TWO>(kpad / GROUP, step);
                a
            }
            /// The product, two steps at a time or not (one function each, as they were).
            #[inline(never)]
            #[target_feature(enable = $features)]
            fn panels<const TWO: bool>(task: &Int8Task, out: &mut [&mut [f32]]) {
                walk!(task, out, $nr, $mr, tile<TWO>, after: |acc, row, bias, cols| {
                    $finish(&acc, task, bias, out, row, cols)
                })
            }

            if two_steps {
                panels::<true>(task, out)
            } else {
                panels::<false>(task, out)
            }
        }
    };
}

int8_kernel! {
    /// With AVX512-VNNI's `vpdpbusd`, which widens as it adds: its weights are never bounded
    /// for two steps (nothing to gain), and two steps would be two `vpdpbusd`.
    fn vnni for "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni", AVX512_NR x 8,
        accumulating __m512i = _mm512_setzero_si512(), finished by finish512;
    load: |p| _mm512_loadu_si512(p.cast()),
    broadcast: |c| _mm512_set1_epi32(c),
    one: |acc, x, w| _mm512_dpbusd_epi32(acc, x, w),
    two: |acc, (x, w), (y, u)| _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, x, w), y, u),
}

int8_kernel! {
    /// With `vpmaddubsw` at AVX-512BW, codes within 0..=127: it sums each pair of products in
    /// i16 (at most 127 * 127 * 2 = 32,258), and `vpmaddwd` by ones sums the lanes into i32.
    /// With `two_steps`, `vpaddw` first adds the next step's pair (the weights' bound keeps the two
    /// within 127 * 258 = 32,766, so nothing saturates or wraps): three multiplier
    /// instructions per two steps instead of four.
    fn maddubs512 for "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma", AVX512_NR x 8,
        accumulating __m512i = _mm512_setzero_si512(), finished by finish512;
    load: |p| _mm512_loadu_si512(p.cast()),
    broadcast: |c| _mm512_set1_epi32(c),
    one: |acc, x, w| {
        let pairs = _mm512_maddubs_epi16(x, w);
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
    },
    two: |acc, (x, w), (y, u)| {
        let pairs = _mm512_add_epi16(_mm512_maddubs_epi16(x, w), _mm512_maddubs_epi16(y, u));
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
    },
}

int8_kernel! {
    /// As `maddubs512` at AVX2, in 256-bit registers. 4 rows: 8 accumulators, 2 weight
    /// registers, the ones, a broadcast and the products fit AVX2's 16 registers without
    /// spills (6 rows, as the f32 kernel has, would not).
    fn maddubs256 for "avx2,fma", AVX2_NR x 4,
        accumulating __m256i = _mm256_setzero_si256(), finished by finish256;
    load: |p| _mm256_loadu_si256(p.cast()),
    broadcast: |c| _mm256_set1_epi32(c),
    one: |acc, x, w| {
        let pairs = _mm256_maddubs_epi16(x, w);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    },
    two: |acc, (x, w), (y, u)| {
        let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(x, w), _mm256_maddubs_epi16(y, u));
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    },
}
