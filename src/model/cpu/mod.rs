//! CPU kernels for the host encoder: matrix products over weights packed once at load, and
//! the row operations around them (layer norm, softmax, attention over short rows, GELU).
//!
//! Written once as plain loops ([`generic`]) and compiled per instruction-set level with
//! `#[target_feature]`; a level's code is reached only through an [`Isa`] value, which holds a
//! token that only a successful feature check creates ([`isa`]). The one exception to "plain
//! loops" is the AVX512-BF16 product ([`bf16`]), whose dot-product instruction no compiler
//! emits on its own.

#[cfg(target_arch = "x86_64")]
mod bf16;
pub mod generic;
mod isa;
mod matmul;

pub use generic::Act;
pub use isa::{Avx2, Avx512, Avx512Bf16, Isa, Level, Neon};
pub use matmul::{PackedMatrix, WeightFormat};

/// Calls `$m!(module, Token, arch, "features"; body)` for every SIMD level: the one place that
/// says which target features each level's code is compiled for (a test checks that they are
/// the features its token detects).
macro_rules! for_each_level {
    ($m:ident! { $($body:tt)* }) => {
        // Micro-kernel tiles (rows x packed columns) fill the level's registers: 16 of 32
        // zmm at avx512, 12 of 16 ymm at avx2, 24 of 32 q registers at neon.
        $m!(avx512, Avx512, "x86_64", "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma", 8, 32; $($body)*);
        $m!(avx2, Avx2, "x86_64", "avx2,fma", 6, 16; $($body)*);
        $m!(neon, Neon, "aarch64", "neon", 6, 16; $($body)*);
    };
}

/// One level's module: a `#[target_feature]` copy of each listed generic function.
macro_rules! level_module {
    ($level:ident, $token:ident, $arch:literal, $features:literal, $mr:literal, $nr:literal;
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

            /// Packed columns per panel of this level's f32 micro-kernel.
            pub const NR: usize = $nr;

            #[target_feature(enable = $features)]
            pub fn f32_panels(x: &[f32], k: usize, panels: &[f32], bias: &[f32], act: Option<Act>, out: &mut [&mut [f32]]) {
                generic::f32_panels::<generic::Fused, $mr, $nr>(x, k, panels, bias, act, out)
            }
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
                    match self {
                        // SAFETY (each arm): the token in `self` was created by a feature check
                        // that found every feature the level's copy is compiled for.
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512(_) => unsafe { avx512::$name($($arg),*) },
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2(_) => unsafe { avx2::$name($($arg),*) },
                        #[cfg(target_arch = "aarch64")]
                        Isa::Neon(_) => unsafe { neon::$name($($arg),*) },
                        #[cfg(not(target_arch = "x86_64"))]
                        Isa::Avx512(t) => match t.never {},
                        #[cfg(not(target_arch = "x86_64"))]
                        Isa::Avx2(t) => match t.never {},
                        #[cfg(not(target_arch = "aarch64"))]
                        Isa::Neon(t) => match t.never {},
                        Isa::Portable => generic::$name::<generic::Unfused>($($arg),*),
                    }
                }
            )*
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
            assert_eq!(bf16::TARGET_FEATURES, Avx512Bf16::FEATURES.join(","));
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(neon::TARGET_FEATURES, Neon::FEATURES.join(","));
    }
}
