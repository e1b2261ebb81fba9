//! CPU kernels for the host encoder: matrix products over weights packed once at load, and
//! the row operations around them (layer norm, softmax, attention over short rows, GELU).
//!
//! Written once as plain loops ([`generic`]) and compiled per instruction-set level with
//! `#[target_feature]`; a level's code is reached only through an [`Isa`] value, which holds a
//! token that only a successful feature check creates ([`isa`]). The exception to "plain
//! loops" are the x86 micro-kernels of the matrix products (`x86.rs`): hand-written because
//! they measured faster (BENCHMARKS.md) and because no compiler emits AVX512-BF16's dot
//! product on its own.

pub mod generic;
mod int8;
mod isa;
mod matmul;
mod tile;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_int8;

pub use generic::Act;
pub use int8::{quantize_weights, MAX_K as INT8_MAX_K, PAIR_GROUP_MAX as INT8_PAIR_GROUP_MAX};
pub use isa::{Avx2, Avx512, Avx512Bf16, Avx512Vnni, Isa, Level, Neon};
pub use matmul::{PackedMatrix, WeightFormat};

/// Calls `$m!(module, Token, arch, "features"; body)` for every SIMD level: the one place that
/// says which target features each level's code is compiled for (a test checks that they are
/// the features its token detects).
macro_rules! for_each_level {
    ($m:ident! { $($body:tt)* }) => {
        $m!(avx512, Avx512, "x86_64", "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"; $($body)*);
        $m!(avx2, Avx2, "x86_64", "avx2,fma"; $($body)*);
        $m!(neon, Neon, "aarch64", "neon"; $($body)*);
    };
}

/// One level's module: a `#[target_feature]` copy of each listed generic function.
macro_rules! level_module {
    ($level:ident, $token:ident, $arch:literal, $features:literal;
     $($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        #[cfg(target_arch = $arch)]
        mod $level {
            #[allow(unused_imports)]
            use super::*;
            #[cfg(test)]
            pub const TARGET_FEATURES: &str = $features;
            $(
                #[target_feature(enable = $features)]
                pub fn $name($($arg: $ty),*) $(-> $ret)? {
                    generic::$name::<generic::Fused>($($arg),*)
                }
            )*

        }
    };
}

/// For each `pub fn name(args);` of [`generic`]: a `#[target_feature]` copy per level, and a
/// safe method `Isa::name` that runs the copy its `Isa` proves the CPU can run.
macro_rules! multiversion {
    ($($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        for_each_level!(level_module! { $(pub fn $name($($arg: $ty),*) $(-> $ret)?;)* });

        impl Isa {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $name(self, $($arg: $ty),*) $(-> $ret)? {
                    dispatch!(self, $name($($arg),*), portable: generic::$name::<generic::Unfused>($($arg),*))
                }
            )*
        }
    };
}

/// Runs the copy of `$f` for the level `$isa` proves, or `$portable` at the portable level.
macro_rules! dispatch {
    ($isa:expr, $f:ident($($arg:expr),*), portable: $portable:expr) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx512 token exists only where a feature check found every feature
            // the avx512 copy is compiled for (`for_each_level!`, checked by a test).
            $crate::model::cpu::Isa::Avx512(_) => unsafe { $crate::model::cpu::avx512::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for the Avx2 token and the avx2 copy.
            $crate::model::cpu::Isa::Avx2(_) => unsafe { $crate::model::cpu::avx2::$f($($arg),*) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as above, for the Neon token and the neon copy.
            $crate::model::cpu::Isa::Neon(_) => unsafe { $crate::model::cpu::neon::$f($($arg),*) },
            // Tokens of another architecture's levels are uninhabited here.
            #[cfg(not(target_arch = "x86_64"))]
            $crate::model::cpu::Isa::Avx512(t) => match t.never {},
            #[cfg(not(target_arch = "x86_64"))]
            $crate::model::cpu::Isa::Avx2(t) => match t.never {},
            #[cfg(not(target_arch = "aarch64"))]
            $crate::model::cpu::Isa::Neon(t) => match t.never {},
            $crate::model::cpu::Isa::Portable => $portable,
        }
    };
}

multiversion! {
    /// `out[i] += v[i]` over the shorter length.
    pub fn add_assign(out: &mut [f32], v: &[f32]);
    /// `x = softmax(x)`.
    pub fn softmax(x: &mut [f32]);
    /// `x = layer_norm(x + residual) * weight + bias` over one row.
    pub fn add_layer_norm(x: &mut [f32], residual: Option<&[f32]>, weight: &[f32], bias: &[f32], eps: f32);
    /// One query's scaled attention scores against keys stored transposed, `[q.len()][stride]`
    /// (`stride` a multiple of [`generic::LANES`], zero-padded): `out[t]` for `t < out.len()`.
    pub fn scores(q: &[f32], kt: &[f32], stride: usize, scale: f32, out: &mut [f32]);
    /// `out[d] = sum_t p[t] v[t * stride + d]`.
    pub fn weighted_sum(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]);
    /// An activation, element-wise.
    pub fn activate(x: &mut [f32], act: Act);
    /// `x` rounded to bf16 values (kept as f32).
    pub fn round_bf16(x: &mut [f32]);
    /// `out[q]` = the bf16 bits of `x[2q]` (low half) and `x[2q + 1]` (high half, 0 past the end),
    /// rounded to nearest even: the pair layout of the bf16 kernel.
    pub fn to_bf16_pairs(x: &[f32], out: &mut [u32]);
    /// One row of activations as u8 codes in `0..=max` for the int8 products (`out` zero
    /// past `x.len()`), and its `(scale, zero point)`: see [`generic::quantize_row`].
    pub fn quantize_row(x: &[f32], out: &mut [u8], max: u8) -> (f32, i32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_spread_rows_evenly_and_cover_them_all() {
        for mr in [4, 6, 8] {
            for m in 1..200 {
                let (mut row, mut sizes) = (0, Vec::new());
                while row < m {
                    let rows = tile::tile_rows(m - row, mr);
                    assert!((1..=mr).contains(&rows), "{m} at {mr}: {rows}");
                    sizes.push(rows);
                    row += rows;
                }
                assert_eq!(row, m);
                assert_eq!(sizes.len(), m.div_ceil(mr), "{m} at {mr}: {sizes:?}");
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{m} at {mr}: {sizes:?}");
            }
        }
    }

    #[test]
    fn each_level_compiles_for_exactly_the_features_its_token_detects() {
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(avx512::TARGET_FEATURES, Avx512::FEATURES.join(","));
            assert_eq!(avx2::TARGET_FEATURES, Avx2::FEATURES.join(","));
            assert_eq!(x86::BF16_FEATURES, Avx512Bf16::FEATURES.join(","));
            assert_eq!(x86_int8::VNNI_FEATURES, Avx512Vnni::FEATURES.join(","));
            assert_eq!(x86::AVX512_FEATURES, Avx512::FEATURES.join(","));
            assert_eq!(x86::AVX2_FEATURES, Avx2::FEATURES.join(","));
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(neon::TARGET_FEATURES, Neon::FEATURES.join(","));
    }
}
