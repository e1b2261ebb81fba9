//! Which micro-kernel a packed matrix runs: one enum for every kernel of every weight format
//! ([`Kernel`]), chosen once per matrix when it is packed ([`Kernel::choose`], from the level
//! and the format that `Compute::decide` settled), and run through one dispatch
//! ([`Kernel::run`]), the one place that reaches the kernels' `#[target_feature]` code.

use super::int8::{self, Int8Task};
use super::isa::{AmxBf16, AmxInt8, Avx2, Avx512, Avx512Bf16, Avx512Vnni, Isa, Neon};
use super::math::Unfused;
use super::tile::{self, Task};
#[cfg(target_arch = "x86_64")]
use super::{x86, x86_amx, x86_int8};

/// How a matrix's weights are stored and multiplied.
#[derive(Debug, Clone, Copy)]
pub enum WeightFormat {
    /// f32 weights, f32 products.
    F32,
    /// bf16 weights; activations rounded to bf16 before each product (`vdpbf16ps`), sums in f32.
    Bf16(Avx512Bf16),
    /// bf16 as `Bf16`, the products on AMX's tiles (`tdpbf16ps`).
    Bf16Amx(AmxBf16),
    /// bf16's rounding of weights and activations on the f32 kernels, for CPUs without bf16
    /// arithmetic: the same decisions as `Bf16`, at f32 speed.
    Bf16Emulated,
    /// int8 weights (per output channel) and activations (per row), sums in i32 (`int8.rs`),
    /// on the level's `vpmaddubsw` kernel (avx512, avx2; 7-bit activation codes) or plain
    /// loops (neon, portable).
    Int8,
    /// int8 on AVX512-VNNI's `vpdpbusd`: the same sums as `Int8`, at the avx512 level.
    Int8Vnni(Avx512Vnni),
    /// int8 as `Int8Vnni`, the products on AMX's tiles (`tdpbusd`): the same sums.
    Int8Amx(AmxInt8),
}

impl WeightFormat {
    /// The dtype the products run in, as `/info` reports it: `f32`, `bf16` or `int8`.
    pub(crate) fn dtype(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::Bf16(_) | WeightFormat::Bf16Amx(_) | WeightFormat::Bf16Emulated => "bf16",
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) | WeightFormat::Int8Amx(_) => "int8",
        }
    }

    /// The products of this format at `isa` as the start-up log and `/info` describe them:
    /// the dtype and the kernel that [`Kernel::choose`] picks for them.
    pub(crate) fn describe(self, isa: Isa) -> &'static str {
        match (self, Kernel::choose(isa, self)) {
            (WeightFormat::Bf16Emulated, _) => "bf16 emulated in f32",
            (
                _,
                Kernel::F32Avx512(_)
                | Kernel::F32Avx2(_)
                | Kernel::F32Neon(_)
                | Kernel::F32Portable,
            ) => "f32",
            (_, Kernel::Bf16(_)) => "bf16 (AVX512-BF16)",
            (_, Kernel::Bf16Amx(_)) => "bf16 (AMX tiles)",
            (_, Kernel::Int8Vnni(_)) => "int8 (AVX512-VNNI)",
            (_, Kernel::Int8Amx(_)) => "int8 (AMX tiles)",
            (_, Kernel::Int8Maddubs512(_)) => {
                "int8 (AVX-512BW vpmaddubsw, 7-bit inputs; no AVX512-VNNI)"
            }
            (_, Kernel::Int8Maddubs256(_)) => "int8 (AVX2 vpmaddubsw, 7-bit inputs)",
            (_, Kernel::Int8Neon(_) | Kernel::Int8Portable) => {
                "int8 on plain loops (no integer dot-product kernel at this level: slower than f32)"
            }
        }
    }
}

/// The plain-loop tiles (f32 and int8 alike): 4 rows x 8 columns fit the 16 registers of
/// x86-64's SSE2 baseline, 6 x 16 fills 24 of NEON's 32.
const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 8;
#[cfg(target_arch = "aarch64")]
const NEON_MR: usize = 6;
const NEON_NR: usize = 16;

/// The micro-kernel one packed matrix runs, with the token that proves this CPU runs it.
/// Tokens of another architecture cannot exist, so neither can its kernels: their arms are
/// left out of the matches below there.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kernel {
    /// f32, hand-written 8 x 32 tiles of AVX-512 FMA (`x86.rs`).
    F32Avx512(Avx512),
    /// f32, hand-written 6 x 16 tiles of AVX2 FMA.
    F32Avx2(Avx2),
    /// f32, the plain-loop tile compiled for NEON: 6 x 16.
    F32Neon(Neon),
    /// f32, the plain-loop tile at the build's baseline: 4 x 8.
    F32Portable,
    /// bf16 pairs on AVX512-BF16's `vdpbf16ps`: 8 x 32 (`x86.rs`).
    Bf16(Avx512Bf16),
    /// int8 on AVX512-VNNI's `vpdpbusd`: 8 x 32 (`x86_int8.rs`).
    Int8Vnni(Avx512Vnni),
    /// bf16 pairs on AMX's `tdpbf16ps`: 32 x 32 in four tiles (`x86_amx.rs`).
    Bf16Amx(AmxBf16),
    /// int8 on AMX's `tdpbusd`: 32 x 32 in four tiles (`x86_amx.rs`).
    Int8Amx(AmxInt8),
    /// int8 on AVX-512BW's `vpmaddubsw` + `vpmaddwd`: 8 x 32, 7-bit activation codes.
    Int8Maddubs512(Avx512),
    /// int8 on AVX2's `vpmaddubsw` + `vpmaddwd`: 4 x 16, 7-bit activation codes.
    Int8Maddubs256(Avx2),
    /// int8, the plain-loop tile compiled for NEON: 6 x 16 (`int8.rs`).
    Int8Neon(Neon),
    /// int8, the plain-loop tile at the build's baseline: 4 x 8.
    Int8Portable,
}

/// One task's operands, in the format of the matrix's kernel.
// bf16 operands and two-step int8 codes are read by x86 kernels only.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) enum Operands<'a> {
    /// f32 rows times `[panel][k][nr]` panels.
    F32(Task<'a, f32, f32>),
    /// Rows of bf16 pairs (`k` pairs per row) times `[panel][k][32]` panels of pairs.
    Bf16(Task<'a, u32, u32>),
    /// u8 activation codes times `[panel][k / 4][nr][4]` weight codes; `two_steps` where the
    /// codes are bounded for adding two steps in i16 (`int8::weight_codes`).
    Int8 { task: Int8Task<'a>, two_steps: bool },
}

impl Kernel {
    /// The kernel for a matrix of `format` at `isa`: bf16 and VNNI products exist at the
    /// avx512 level only, and take it whatever `isa` says.
    pub(super) fn choose(isa: Isa, format: WeightFormat) -> Self {
        match (format, isa) {
            (WeightFormat::Bf16(token), _) => Kernel::Bf16(token),
            (WeightFormat::Int8Vnni(token), _) => Kernel::Int8Vnni(token),
            (WeightFormat::Bf16Amx(token), _) => Kernel::Bf16Amx(token),
            (WeightFormat::Int8Amx(token), _) => Kernel::Int8Amx(token),
            (WeightFormat::F32 | WeightFormat::Bf16Emulated, Isa::Avx512(token)) => {
                Kernel::F32Avx512(token)
            }
            (WeightFormat::F32 | WeightFormat::Bf16Emulated, Isa::Avx2(token)) => {
                Kernel::F32Avx2(token)
            }
            (WeightFormat::F32 | WeightFormat::Bf16Emulated, Isa::Neon(token)) => {
                Kernel::F32Neon(token)
            }
            (WeightFormat::F32 | WeightFormat::Bf16Emulated, Isa::Portable) => Kernel::F32Portable,
            (WeightFormat::Int8, Isa::Avx512(token)) => Kernel::Int8Maddubs512(token),
            (WeightFormat::Int8, Isa::Avx2(token)) => Kernel::Int8Maddubs256(token),
            (WeightFormat::Int8, Isa::Neon(token)) => Kernel::Int8Neon(token),
            (WeightFormat::Int8, Isa::Portable) => Kernel::Int8Portable,
        }
    }

    /// The level of the kernel's code, at which the row operations around its products run.
    pub(super) fn isa(self) -> Isa {
        match self {
            Kernel::F32Avx512(token) | Kernel::Int8Maddubs512(token) => Isa::Avx512(token),
            #[cfg(target_arch = "x86_64")]
            Kernel::Bf16(token) => Isa::Avx512(token.avx512()),
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Vnni(token) => Isa::Avx512(token.avx512()),
            #[cfg(target_arch = "x86_64")]
            Kernel::Bf16Amx(token) => Isa::Avx512(token.bf16().avx512()),
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Amx(token) => Isa::Avx512(token.vnni().avx512()),
            Kernel::F32Avx2(token) | Kernel::Int8Maddubs256(token) => Isa::Avx2(token),
            Kernel::F32Neon(token) | Kernel::Int8Neon(token) => Isa::Neon(token),
            Kernel::F32Portable | Kernel::Int8Portable => Isa::Portable,
        }
    }

    /// Packed columns per panel.
    pub(super) fn nr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::F32Avx512(_)
            | Kernel::Bf16(_)
            | Kernel::Int8Vnni(_)
            | Kernel::Bf16Amx(_)
            | Kernel::Int8Amx(_)
            | Kernel::Int8Maddubs512(_) => x86::AVX512_NR,
            #[cfg(target_arch = "x86_64")]
            Kernel::F32Avx2(_) | Kernel::Int8Maddubs256(_) => x86::AVX2_NR,
            Kernel::F32Neon(_) | Kernel::Int8Neon(_) => NEON_NR,
            Kernel::F32Portable | Kernel::Int8Portable => PORTABLE_NR,
        }
    }

    /// Whether the kernel sums pairs of products in i16 (`vpmaddubsw`): its activation codes
    /// are 7-bit, and its weight codes may be bounded for two steps at a time.
    pub(super) fn pairs_in_i16(self) -> bool {
        matches!(self, Kernel::Int8Maddubs512(_) | Kernel::Int8Maddubs256(_))
    }

    /// The largest activation code an int8 kernel multiplies without saturating.
    pub(super) fn activation_max(self) -> u8 {
        if self.pairs_in_i16() {
            int8::PAIR_ACTIVATION_MAX
        } else {
            u8::MAX
        }
    }

    /// Runs the kernel on one task's share of a product. A matrix packs its weights for its
    /// kernel (`PackedMatrix::pack`), so the operands are always of the kernel's format.
    #[allow(unsafe_code)]
    pub(super) fn run(self, operands: &Operands, out: &mut [&mut [f32]]) {
        // Every `unsafe` below calls a kernel compiled for exactly the features that its
        // token's detection checks (`mod.rs` tests that the lists match), token in hand.
        match (self, operands) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx512 token: every feature of `avx512_f32` was detected.
            (Kernel::F32Avx512(_), Operands::F32(task)) => unsafe { x86::avx512_f32(task, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx2 token: every feature of `avx2_f32` was detected.
            (Kernel::F32Avx2(_), Operands::F32(task)) => unsafe { x86::avx2_f32(task, out) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Neon token: NEON was detected.
            (Kernel::F32Neon(_), Operands::F32(task)) => unsafe { neon::f32_panels(task, out) },
            (Kernel::F32Portable, Operands::F32(task)) => {
                tile::f32_panels::<Unfused, PORTABLE_MR, PORTABLE_NR>(task, out)
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx512Bf16 token: every feature of `avx512_bf16` was detected.
            (Kernel::Bf16(_), Operands::Bf16(task)) => unsafe { x86::avx512_bf16(task, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx512Vnni token: every feature of `vnni` was detected.
            (Kernel::Int8Vnni(_), Operands::Int8 { task, two_steps }) => unsafe {
                x86_int8::vnni(task, *two_steps, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an AmxBf16 token: every feature of `amx_bf16` was detected, and AMX's
            // tiles with bf16 products are usable by this process.
            (Kernel::Bf16Amx(_), Operands::Bf16(task)) => unsafe { x86_amx::amx_bf16(task, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an AmxInt8 token: every feature of `amx_int8` was detected, and AMX's
            // tiles with int8 products are usable by this process.
            (Kernel::Int8Amx(_), Operands::Int8 { task, .. }) => unsafe {
                x86_amx::amx_int8(task, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx512 token: every feature of `maddubs512` was detected.
            (Kernel::Int8Maddubs512(_), Operands::Int8 { task, two_steps }) => unsafe {
                x86_int8::maddubs512(task, *two_steps, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx2 token: every feature of `maddubs256` was detected.
            (Kernel::Int8Maddubs256(_), Operands::Int8 { task, two_steps }) => unsafe {
                x86_int8::maddubs256(task, *two_steps, out)
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Neon token: NEON was detected.
            (Kernel::Int8Neon(_), Operands::Int8 { task, .. }) => unsafe {
                neon::int8_panels(task, out)
            },
            (Kernel::Int8Portable, Operands::Int8 { task, .. }) => {
                int8::plain_panels::<Unfused, PORTABLE_MR, PORTABLE_NR>(task, out)
            }
            (kernel, _) => unreachable!("a {kernel:?} matrix given another format's operands"),
        }
    }
}

/// The plain-loop kernels compiled for NEON.
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::super::int8::{self, Int8Task};
    use super::super::math::Fused;
    use super::super::tile::{self, Task};
    use super::{NEON_MR, NEON_NR};

    #[target_feature(enable = "neon")]
    pub(super) fn f32_panels(task: &Task<f32, f32>, out: &mut [&mut [f32]]) {
        tile::f32_panels::<Fused, NEON_MR, NEON_NR>(task, out)
    }

    #[target_feature(enable = "neon")]
    pub(super) fn int8_panels(task: &Int8Task, out: &mut [&mut [f32]]) {
        int8::plain_panels::<Fused, NEON_MR, NEON_NR>(task, out)
    }
}
