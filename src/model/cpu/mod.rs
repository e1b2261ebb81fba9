//! CPU kernels for the host encoder: matrix products over weights packed once at load, and
//! the row operations around them (layer norm, softmax, attention over short rows, GELU).
//!
//! Written once as plain loops (`generic.rs`, `math.rs`, `tile.rs`) and compiled per
//! instruction-set level with `#[target_feature]`; a level's code is reached only through an
//! [`Isa`] value, which holds a token that only a successful feature check creates
//! (`isa.rs`). The exception to "plain loops" are the x86 micro-kernels of the matrix
//! products (`x86.rs`, `x86_int8.rs`, and `x86_amx.rs` for AMX's tiles): hand-written because they measured faster
//! (BENCHMARKS.md) and because no compiler emits AVX512-BF16's or VNNI's dot products on its
//! own. Each packed matrix runs one kernel, chosen when it is packed (`kernel.rs`).
//!
//! The `unsafe` of the crate's kernels lives here: calls into `#[target_feature]` code (in
//! `dispatch!` and `kernel.rs`, each with its token in hand) and the x86 kernels' reads
//! through pointers (`x86.rs`, `x86_int8.rs`).

mod attention;
mod attention_products;
mod generic;
mod int8;
mod isa;
mod kernel;
mod math;
mod matmul;
mod tile;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_amx;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_int8;

pub use attention::QUERY_BLOCK;
pub use attention_products::{attend_by_products, MIN_QUERIES as PRODUCT_ATTENTION_MIN_QUERIES};
pub use generic::{Act, LANES};
#[cfg(feature = "testing")]
pub use int8::{quantize_weights, MAX_K as INT8_MAX_K, PAIR_GROUP_MAX as INT8_PAIR_GROUP_MAX};
pub use isa::{AmxBf16, AmxInt8, Avx2, Avx512, Avx512Bf16, Avx512Vnni, Isa, Level, Neon};
pub use kernel::WeightFormat;
pub use matmul::PackedMatrix;

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
            pub(super) const TARGET_FEATURES: &str = $features;
            $(
                #[target_feature(enable = $features)]
                #[allow(clippy::too_many_arguments)]
                pub(super) fn $name($($arg: $ty),*) $(-> $ret)? {
                    generic::$name::<math::Fused>($($arg),*)
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

        // The calls into each level's copy.
        #[allow(unsafe_code)]
        impl Isa {
            $(
                $(#[$doc])*
                #[inline]
                #[allow(clippy::too_many_arguments)]
                pub fn $name(self, $($arg: $ty),*) $(-> $ret)? {
                    dispatch!(self, $name($($arg),*), portable: generic::$name::<math::Unfused>($($arg),*))
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
            // Tokens of another architecture's levels cannot exist: no arms for them.
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
    /// (`stride` a multiple of [`LANES`], zero-padded): `out[t]` for `t < out.len()`.
    pub fn scores(q: &[f32], kt: &[f32], stride: usize, scale: f32, out: &mut [f32]);
    /// `out[d] = sum_t p[t] v[t * stride + d]`.
    pub fn weighted_sum(p: &[f32], v: &[f32], stride: usize, out: &mut [f32]);
    /// Softmax attention of a sequence's queries over its keys and values, blocks of queries
    /// at a time (`attention.rs` says how the arguments are laid out).
    pub fn attend(q: &[f32], stride: usize, kt: &[f32], kt_stride: usize, v: &[f32], len: usize, scale: f32, scratch: &mut [f32], out: &mut [f32]);
    /// An activation, element-wise.
    pub fn activate(x: &mut [f32], act: Act);
    /// `x` rounded to bf16 values (kept as f32).
    pub fn round_bf16(x: &mut [f32]);
    /// `out[q]` = the bf16 bits of `x[2q]` (low half) and `x[2q + 1]` (high half, 0 past the end),
    /// rounded to nearest even: the pair layout of the bf16 kernel.
    pub fn to_bf16_pairs(x: &[f32], out: &mut [u32]);
    /// One row of activations as u8 codes in `0..=max` for the int8 products (`out` zero
    /// past `x.len()`), and its `(scale, zero point)`: asymmetric, over the row's range with
    /// 0 included, so that 0 is exact (`generic.rs`'s `quantize_row` has the details).
    pub fn quantize_row(x: &[f32], out: &mut [u8], max: u8) -> (f32, i32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_compiles_for_exactly_the_features_its_token_detects() {
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(avx512::TARGET_FEATURES, Avx512::FEATURES.join(","));
            assert_eq!(avx2::TARGET_FEATURES, Avx2::FEATURES.join(","));
            // The matrix products' kernels (`kernel.rs` calls each with this token).
            assert_eq!(x86::avx512_f32::FEATURES, Avx512::FEATURES.join(","));
            assert_eq!(x86::avx2_f32::FEATURES, Avx2::FEATURES.join(","));
            assert_eq!(x86::avx512_bf16::FEATURES, Avx512Bf16::FEATURES.join(","));
            assert_eq!(x86_int8::vnni::FEATURES, Avx512Vnni::FEATURES.join(","));
            assert_eq!(x86_int8::maddubs512::FEATURES, Avx512::FEATURES.join(","));
            assert_eq!(x86_int8::maddubs256::FEATURES, Avx2::FEATURES.join(","));
            // The AMX kernels call these two for rows they do not take.
            assert_eq!(x86_amx::amx_int8::FEATURES, AmxInt8::FEATURES.join(","));
            assert_eq!(x86_amx::amx_int8::FEATURES, x86_int8::vnni::FEATURES);
            assert_eq!(x86_amx::amx_bf16::FEATURES, AmxBf16::FEATURES.join(","));
            assert_eq!(x86_amx::amx_bf16::FEATURES, x86::avx512_bf16::FEATURES);
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(neon::TARGET_FEATURES, Neon::FEATURES.join(","));
    }
}
