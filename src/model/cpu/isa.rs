//! Instruction-set levels, and the tokens that prove a level is present.
//!
//! Every kernel entry point takes an [`Isa`], and an `Isa` holds a token that only a
//! successful run-time feature check can create (the tokens' fields are private). So no safe
//! function of this module tree can reach code compiled for an instruction set the CPU lacks.

use std::fmt;

/// A CPU kernel level, as `--cpu-kernels` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Level {
    /// x86-64-v4: AVX-512 F/BW/DQ/VL with FMA (Intel Skylake-SP and later, AMD Zen 4 and later).
    #[value(name = "avx512", alias = "x86-64-v4")]
    Avx512,
    /// x86-64-v3: AVX2 with FMA (Intel Haswell and later, every AMD Zen).
    #[value(name = "avx2", alias = "x86-64-v3")]
    Avx2,
    /// aarch64 Advanced SIMD (every 64-bit ARM server CPU).
    #[value(name = "neon")]
    Neon,
    /// Plain Rust the compiler vectorises for the build's baseline: correct on any CPU.
    #[value(name = "portable")]
    Portable,
}

impl Level {
    /// Every level, fastest first.
    pub const ALL: [Level; 4] = [Level::Avx512, Level::Avx2, Level::Neon, Level::Portable];

    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Neon => "neon",
            Level::Portable => "portable",
        }
    }

    /// The instruction sets a level needs, as people read them.
    pub fn features(self) -> &'static str {
        match self {
            Level::Avx512 => "AVX-512 F/BW/DQ/VL + FMA",
            Level::Avx2 => "AVX2 + FMA",
            Level::Neon => "NEON",
            Level::Portable => "the build's baseline instructions only",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An uninhabited type: a token that wraps one cannot exist (other architectures). The
/// field is visible in `cpu`, so there a token of another architecture, and any enum
/// variant that holds one, is known to be impossible: matches leave their arms out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Never {}

macro_rules! token {
    (
        $(#[$doc:meta])* $name:ident, $arch:literal, $detect:ident, [$($feature:tt),+]
        $(, and $extra:literal if $check:path)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            #[cfg(target_arch = $arch)]
            _private: (),
            // Read by the compiler's exhaustiveness checks, not by code.
            #[cfg(not(target_arch = $arch))]
            #[allow(dead_code)]
            pub(super) never: Never,
        }

        impl $name {
            /// The target features this token stands for, comma-separated as `target_feature`
            /// takes them (and, for AMX, what `target_feature` cannot name yet: see `missing`).
            pub const FEATURES: &'static [&'static str] = &[$($feature),+];

            /// The token, if this CPU has every feature.
            #[cfg(target_arch = $arch)]
            pub fn detect() -> Option<Self> {
                Self::missing().is_empty().then_some(Self { _private: () })
            }

            #[cfg(not(target_arch = $arch))]
            pub fn detect() -> Option<Self> {
                None
            }

            /// The features of this token that the CPU lacks (all of them on another architecture).
            pub fn missing() -> Vec<&'static str> {
                #[cfg(target_arch = $arch)]
                {
                    let mut missing = Vec::new();
                    $(if !std::arch::$detect!($feature) { missing.push($feature) })+
                    $(if missing.is_empty() && !$check() { missing.push($extra) })?
                    missing
                }
                #[cfg(not(target_arch = $arch))]
                {
                    #[allow(unused_mut)]
                    let mut all = Self::FEATURES.to_vec();
                    $(all.push($extra);)?
                    all
                }
            }
        }
    };
}

token!(
    /// Proof that the CPU runs x86-64-v4's AVX-512 subset (F, BW, DQ, VL) and FMA.
    Avx512, "x86_64", is_x86_feature_detected, ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"]
);
token!(
    /// Proof that the CPU has AVX512-BF16 (`vdpbf16ps`) on top of [`Avx512`].
    Avx512Bf16, "x86_64", is_x86_feature_detected, ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx512bf16"]
);
token!(
    /// Proof that the CPU has AVX512-VNNI (`vpdpbusd`, u8 x i8 dot products summed in i32) on
    /// top of [`Avx512`].
    Avx512Vnni, "x86_64", is_x86_feature_detected, ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx512vnni"]
);
token!(
    /// Proof that the CPU has AMX's tiles and their int8 products (`tdpbusd`, u8 x i8 in
    /// fours summed in i32, 16 x 16 x 64 per instruction), that Linux lets this process use
    /// them, and [`Avx512Vnni`]. The AMX instructions are written in `asm!` (Rust's
    /// `target_feature` does not take AMX yet), so the check is `x86_amx::tiles(INT8)`.
    AmxInt8, "x86_64", is_x86_feature_detected, ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx512vnni"],
    and "amx-int8 (usable AMX tiles)" if super::x86_amx::tiles_int8
);
token!(
    /// Proof that the CPU has AMX's tiles and their bf16 products (`tdpbf16ps`, pairs of
    /// bf16 summed in f32, 16 x 16 x 32 per instruction), that Linux lets this process use
    /// them, and [`Avx512Bf16`]; see [`AmxInt8`].
    AmxBf16, "x86_64", is_x86_feature_detected, ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx512bf16"],
    and "amx-bf16 (usable AMX tiles)" if super::x86_amx::tiles_bf16
);
token!(
    /// Proof that the CPU runs x86-64-v3's AVX2 and FMA.
    Avx2, "x86_64", is_x86_feature_detected, ["avx2", "fma"]
);
token!(
    /// Proof that the CPU has Advanced SIMD (always true on aarch64 Linux, checked anyway).
    Neon, "aarch64", is_aarch64_feature_detected, ["neon"]
);

/// `$token::$method()`: the token of a subset of `$token`'s features, which every CPU that has
/// `$token`'s has too.
macro_rules! implies {
    ($(#[$doc:meta])* $token:ident => $base:ident, $method:ident) => {
        impl $token {
            $(#[$doc])*
            pub fn $method(self) -> $base {
                #[cfg(target_arch = "x86_64")]
                {
                    $base { _private: () }
                }
                // Tokens of another architecture cannot exist.
                #[cfg(not(target_arch = "x86_64"))]
                match self.never {}
            }
        }
    };
}

implies!(
    /// Every AVX512-BF16 CPU is an AVX-512 CPU.
    Avx512Bf16 => Avx512, avx512
);
implies!(
    /// Every AVX512-VNNI CPU is an AVX-512 CPU.
    Avx512Vnni => Avx512, avx512
);
implies!(
    /// An [`AmxInt8`] token was checked for AVX512-VNNI too.
    AmxInt8 => Avx512Vnni, vnni
);
implies!(
    /// An [`AmxBf16`] token was checked for AVX512-BF16 too.
    AmxBf16 => Avx512Bf16, bf16
);

/// A level this CPU was checked to run: the argument every kernel takes.
#[derive(Debug, Clone, Copy)]
pub enum Isa {
    Avx512(Avx512),
    Avx2(Avx2),
    Neon(Neon),
    Portable,
}

impl Isa {
    /// The level, if this CPU runs it; otherwise the error names what is missing.
    pub fn detect(level: Level) -> Result<Self, String> {
        let missing = |what: Vec<&str>| {
            format!(
                "this CPU cannot run --cpu-kernels {level} ({}): it lacks {}",
                level.features(),
                what.join(", ")
            )
        };
        match level {
            Level::Avx512 => Avx512::detect()
                .map(Isa::Avx512)
                .ok_or_else(|| missing(Avx512::missing())),
            Level::Avx2 => Avx2::detect()
                .map(Isa::Avx2)
                .ok_or_else(|| missing(Avx2::missing())),
            Level::Neon => Neon::detect()
                .map(Isa::Neon)
                .ok_or_else(|| missing(Neon::missing())),
            Level::Portable => Ok(Isa::Portable),
        }
    }

    /// The fastest level this CPU runs.
    pub fn best() -> Self {
        Level::ALL
            .into_iter()
            .find_map(|level| Self::detect(level).ok())
            .unwrap_or(Isa::Portable)
    }

    pub fn level(self) -> Level {
        match self {
            Isa::Avx512(_) => Level::Avx512,
            Isa::Avx2(_) => Level::Avx2,
            Isa::Neon(_) => Level::Neon,
            Isa::Portable => Level::Portable,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.level().name())
    }
}
