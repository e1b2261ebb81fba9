//! Hand-written x86-64 micro-kernels for the packed products: f32 at avx512 (8 rows x 32
//! columns: 16 of the 32 zmm registers accumulate) and at avx2 (6 x 16: 12 of 16 ymm), and
//! bf16 pairs with AVX512-BF16's `vdpbf16ps` (8 x 32), which no compiler emits on its own.
//! The plain-loop kernel (`tile::f32_panels`) computes the same thing, but the compiler's
//! code for it was slower here and changed shape between builds (BENCHMARKS.md).
//!
//! All three come from one definition, [`float_kernel!`], over the instruction set's
//! operations; the int8 kernels (`x86_int8.rs`) share the walk ([`walk!`]) and the helpers
//! here. Each kernel is a `#[target_feature]` function, called (in `kernel.rs`) only with
//! the token of its instruction set in hand. Inside, every pointer read is bounded by a slice
//! that was cut, with a checked bound, before the loop.

use super::generic::{self, Act};
use super::math::Fused;
use super::tile::{self, Task};
use std::arch::x86_64::*;

/// Packed columns per panel of the 512-bit kernels (f32, bf16, int8): two 16-lane registers.
pub(super) const AVX512_NR: usize = 32;
/// Packed columns per panel of the 256-bit kernels (f32, int8): two 8-lane registers.
pub(super) const AVX2_NR: usize = 16;

/// Defines, for tests only, `$name::FEATURES`: the features the kernel `$name` is compiled
/// for, which a test checks against its token's (a module beside the function of that name).
macro_rules! features {
    ($name:ident, $features:literal) => {
        #[cfg(test)]
        pub(super) mod $name {
            pub(in super::super) const FEATURES: &str = $features;
        }
    };
}
pub(super) use features;

/// Runs `$tile::<R, $two, PREFETCH>(task, row0, (panel, next))` (`$tile<$two>`; `$tile::<R,
/// PREFETCH>` without `$two`) on every tile of the task's panels (`$nr` columns each, tiles of
/// up to `$mr` rows), `R` a constant, then `$finish` with the tile's accumulators `$acc`, its
/// first row `$row`, its bias and its columns: in each arm of the prefetch's `match` (`each:`,
/// as the float kernels had it), or once after it (`after:`, as the int8 kernels had it), which
/// keeps each kernel's machine code as it was.
macro_rules! walk {
    (
        $task:ident, $out:ident, $nr:expr, $mr:expr, $tile:ident $(<$two:ident>)?,
        $place:ident: |$acc:ident, $row:ident, $bias:ident, $cols:ident| $finish:expr
    ) => {{
        let (m, width) = ($out.len(), $out.first().map_or(0, |r| r.len()));
        tile::walk_panels::<_, $nr>(
            m,
            $mr,
            ($task.panels, $task.k * $nr),
            $task.bias,
            width,
            |rows, $row, (panel, next), $bias, $cols| {
                macro_rules! call {
                    ($r:literal) => {
                        walk!(@$place $finish, $acc, match next {
                            Some(next) => $tile::<$r, $($two,)? true>($task, $row, (panel, next)),
                            None => $tile::<$r, $($two,)? false>($task, $row, (panel, &[])),
                        })
                    };
                }
                tile::by_rows!(rows, call)
            },
        )
    }};
    (@each $finish:expr, $acc:ident, match $next:ident { $($pat:pat => $tile:expr,)* }) => {
        match $next { $($pat => { let $acc = $tile; $finish })* }
    };
    (@after $finish:expr, $acc:ident, $tiles:expr) => {{
        let $acc = $tiles;
        $finish
    }};
}
pub(super) use walk;

/// Defines `$name(task, out)`, the product over a task's panels of `$w` (`[panel][k][$nr]`)
/// with rows of `$x` (`k` per row), compiled for `$features`: for each tile of up to `$mr`
/// rows and each of the `k` steps, two `$v` registers of weights (`load: |p|`, from a
/// pointer to `$nr / 2` of them) and, per row, the row's value broadcast to every lane
/// (`broadcast: |x|`, from a pointer to it), accumulated as `madd: |acc, x, w|` computes;
/// then [`finish`] adds the bias, applies the activation and stores.
macro_rules! float_kernel {
    (
        $(#[$doc:meta])*
        fn $name:ident(rows of $x:ty, panels of $w:ty) for $features:literal, $nr:ident x $mr:literal,
        accumulating $v:ty = $zero:expr;
        load: |$p:ident| $load:expr,
        broadcast: |$xp:ident| $broadcast:expr,
        madd: |$a:ident, $xv:ident, $b:ident| $madd:expr $(,)?
    ) => {
        features!($name, $features);

        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(super) fn $name(task: &Task<$x, $w>, out: &mut [&mut [f32]]) {
            /// `R` rows of the input (from `row0`) times one panel: the tile's accumulators.
            #[inline]
            #[target_feature(enable = $features)]
            fn tile<const R: usize, const PREFETCH: bool>(
                task: &Task<$x, $w>,
                row0: usize,
                (panel, next): (&[$w], &[$w]),
            ) -> [[$v; 2]; R] {
                const HALF: usize = $nr / 2;
                // Weights per cache line of the next panel, which the first tile prefetches.
                const LINE: usize = 64 / std::mem::size_of::<$w>();
                let k = task.k;
                // Checked bounds for every read below: R rows of k, and k rows of $nr.
                let (x, panel) = (&task.x[row0 * k..(row0 + R) * k], &panel[..k * $nr]);
                let (xp, bp) = (x.as_ptr(), panel.as_ptr());
                let mut a = [[$zero; 2]; R];
                for kk in 0..k {
                    if PREFETCH {
                        for line in 0..$nr / LINE {
                            prefetch(next, kk * $nr + line * LINE);
                        }
                    }
                    // SAFETY: kk < k, so both reads of HALF values end within
                    // `bp + $nr kk + $nr <= panel.len()`; the loads are unaligned.
                    let (b0, b1) = unsafe {
                        let $p = bp.add(kk * $nr);
                        ($load, {
                            let $p = $p.add(HALF);
                            $load
                        })
                    };
                    for (i, acc) in a.iter_mut().enumerate() {
                        // SAFETY: i < R and kk < k, so `i k + kk < R k = x.len()`.
                        let $xv = unsafe {
                            let $xp = xp.add(i * k + kk);
                            $broadcast
                        };
                        acc[0] = { let ($a, $b) = (acc[0], b0); $madd };
                        acc[1] = { let ($a, $b) = (acc[1], b1); $madd };
                    }
                }
                a
            }
            walk!(task, out, $nr, $mr, tile, each: |acc, row, bias, cols| {
                finish(tile_values(&acc), bias, task.act, out, row, cols)
            })
        }
    };
}

float_kernel! {
    /// The f32 product over a task's panels (`[panel][k][32]`) at avx512.
    fn avx512_f32(rows of f32, panels of f32)
        for "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma", AVX512_NR x 8,
        accumulating __m512 = _mm512_setzero_ps();
    load: |p| _mm512_loadu_ps(p),
    broadcast: |x| _mm512_set1_ps(*x),
    madd: |acc, x, w| _mm512_fmadd_ps(x, w, acc),
}

float_kernel! {
    /// The f32 product over a task's panels (`[panel][k][16]`) at avx2, in 256-bit registers.
    fn avx2_f32(rows of f32, panels of f32) for "avx2,fma", AVX2_NR x 6,
        accumulating __m256 = _mm256_setzero_ps();
    load: |p| _mm256_loadu_ps(p),
    broadcast: |x| _mm256_set1_ps(*x),
    madd: |acc, x, w| _mm256_fmadd_ps(x, w, acc),
}

float_kernel! {
    /// The bf16 product: each input row as bf16 pairs (`k` pairs per row, see
    /// `Isa::to_bf16_pairs`) times panels of pairs (`[panel][k][32]`), summed in f32. The u32
    /// pairs are 512 bits of plain data as integers or as bf16 lanes.
    fn avx512_bf16(rows of u32, panels of u32)
        for "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16", AVX512_NR x 8,
        accumulating __m512 = _mm512_setzero_ps();
    load: |p| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())),
    broadcast: |x| std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*x as i32)),
    madd: |acc, x, w| _mm512_dpbf16_ps(acc, x, w),
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
