//! How forward passes run: decided once, at load, from the device, the dtype, the CPU's
//! features, `--cpu-kernels` and the model's architecture, and held in one value that `/info`
//! and the start-up log show.

use super::cpu::{AmxBf16, AmxInt8, Avx512Bf16, Avx512Vnni, Isa, Level, WeightFormat};
use super::Dtype;
use crate::checkpoint::Family;
use candle_core::{DType, Device};
use std::fmt;

/// `--cpu-kernels`: which CPU code runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuKernels {
    /// The fastest level this CPU runs (avx512, else avx2, else neon, else portable), with
    /// AMX's tiles for bf16 and int8 products where the CPU has them.
    Auto,
    /// avx512 with AMX's tiles for the bf16 and int8 products (Intel Xeon since Sapphire
    /// Rapids); f32 products as avx512.
    Amx,
    /// x86-64-v4: AVX-512 F/BW/DQ/VL + FMA; bf16 products where AVX512-BF16 exists, int8
    /// on AVX512-VNNI where it exists; never AMX's tiles.
    #[value(alias = "x86-64-v4")]
    Avx512,
    /// x86-64-v3: AVX2 + FMA.
    #[value(alias = "x86-64-v3")]
    Avx2,
    /// aarch64 Advanced SIMD.
    Neon,
    /// Plain code for the build's baseline CPU: correct anywhere, slowest.
    Portable,
    /// candle's generic ops (padded batches), for comparison.
    Candle,
}

impl CpuKernels {
    fn level(self) -> Option<Level> {
        match self {
            CpuKernels::Avx512 | CpuKernels::Amx => Some(Level::Avx512),
            CpuKernels::Avx2 => Some(Level::Avx2),
            CpuKernels::Neon => Some(Level::Neon),
            CpuKernels::Portable => Some(Level::Portable),
            CpuKernels::Auto | CpuKernels::Candle => None,
        }
    }
}

/// The compute path.
#[derive(Debug, Clone)]
pub enum Compute {
    /// candle's ops on `device` in `dtype`: GPUs, f16 on CPUs, `--cpu-kernels candle`, and
    /// architectures the host encoder does not implement; `reason` says why a CPU runs it
    /// here when the operator did not ask for it.
    Candle {
        device: Device,
        dtype: DType,
        reason: Option<&'static str>,
    },
    /// The host encoder (unpadded rows, fused attention and layer norms) on this crate's CPU
    /// kernels at a level the CPU was checked to run.
    Host { isa: Isa, weights: WeightFormat },
}

/// A decision, with what the operator should hear about it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub compute: Compute,
    /// Start-up warnings: a dtype without hardware support, a flag that has no effect.
    pub warnings: Vec<String>,
}

/// Why a model of another family runs on candle's ops on a CPU.
static HOST_FAMILIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "the host encoder runs {} only",
        Family::list(Family::runs_on_host)
    )
});

impl Compute {
    /// candle's ops, asked for (or the only path, on a GPU).
    pub fn candle(device: Device, dtype: DType) -> Self {
        Compute::Candle {
            device,
            dtype,
            reason: None,
        }
    }

    /// Decides how to run a model of `family` in `dtype` on `device`. Asking for a CPU
    /// level this CPU lacks is an error that names the missing features. Architectures the
    /// host encoder does not implement run on candle's ops; a kernel level asked for them has
    /// no effect and is warned about, as on a GPU, rather than refused: the flag chooses
    /// among the paths a model has, and these have one.
    pub fn decide(
        device: &Device,
        asked: Dtype,
        kernels: CpuKernels,
        family: Family,
    ) -> Result<Decision, String> {
        let mut warnings = Vec::new();
        // candle has no int8: where the host encoder does not run, int8 runs as f32.
        let dtype = asked.candle();
        let int8_on_candle = |warnings: &mut Vec<String>, why: &str| {
            if asked == Dtype::Int8 {
                warnings.push(format!(
                    "--dtype int8 runs on the host encoder's CPU kernels only; {why}, so the model runs in f32"
                ));
            }
        };
        let candle = Compute::candle(device.clone(), dtype);
        if !device.is_cpu() {
            if kernels != CpuKernels::Auto {
                warnings.push(format!(
                    "--cpu-kernels {} has no effect: the model runs on {}",
                    kernels.to_possible_value_name(),
                    crate::device::describe(device)
                ));
            }
            int8_on_candle(
                &mut warnings,
                &format!("this model runs on {}", crate::device::describe(device)),
            );
            return Ok(Decision {
                compute: candle,
                warnings,
            });
        }
        if kernels == CpuKernels::Candle {
            int8_on_candle(&mut warnings, "--cpu-kernels candle runs candle's ops");
            if dtype != DType::F32 {
                warnings.push(format!(
                    "--dtype {} on candle's CPU path converts every operation to f32 and back: about half the f32 speed. Use --dtype f32, or leave --cpu-kernels at auto",
                    dtype_name(dtype)
                ));
            }
            return Ok(Decision {
                compute: candle,
                warnings,
            });
        }
        if !family.runs_on_host() {
            if kernels != CpuKernels::Auto {
                warnings.push(format!(
                    "--cpu-kernels {} has no effect: {}, so this {} model runs on candle's ops",
                    kernels.to_possible_value_name(),
                    HOST_FAMILIES.as_str(),
                    family.as_str()
                ));
            }
            int8_on_candle(&mut warnings, &HOST_FAMILIES);
            if dtype != DType::F32 {
                warnings.push(format!(
                    "--dtype {} on candle's CPU path converts every operation to f32 and back: about half the f32 speed. Use --dtype f32",
                    dtype_name(dtype)
                ));
            }
            return Ok(Decision {
                compute: Compute::Candle {
                    device: device.clone(),
                    dtype,
                    reason: Some(HOST_FAMILIES.as_str()),
                },
                warnings,
            });
        }
        let isa = match kernels.level() {
            // `amx` is AVX-512 with the tiles: where AVX-512 itself is missing, say what
            // `amx` needs, not what `avx512` does.
            Some(_) if kernels == CpuKernels::Amx => Isa::detect(Level::Avx512).map_err(|_| {
                let mut missing = AmxInt8::missing();
                if !missing.iter().any(|m| m.starts_with("amx")) {
                    missing.push("amx-int8 (usable AMX tiles)");
                }
                amx_missing(missing)
            })?,
            Some(level) => Isa::detect(level)?,
            None => Isa::best(),
        };
        let Some(weights) = host_format(asked, isa, kernels, &mut warnings)? else {
            warnings.push(format!(
                "--dtype {}: CPUs have no kernels for it here, so it runs on candle's generic CPU path, several times slower than f32. Use --dtype f32 (or bf16 on CPUs with AVX512-BF16)",
                dtype_name(dtype)
            ));
            return Ok(Decision {
                compute: candle,
                warnings,
            });
        };
        Ok(Decision {
            compute: Compute::Host { isa, weights },
            warnings,
        })
    }

    /// The kernel level (`avx512`, `avx2`, `neon`, `portable`), or `candle`.
    pub fn kernels(&self) -> &'static str {
        match self {
            Compute::Candle { .. } => "candle",
            Compute::Host { isa, .. } => isa.level().name(),
        }
    }

    /// The dtype the products run in, as `/info` reports it: `f32`, `f16`, `bf16` or `int8`.
    pub fn dtype(&self) -> &'static str {
        match self {
            Compute::Candle { dtype, .. } => dtype_name(*dtype),
            Compute::Host { weights, .. } => weights.dtype(),
        }
    }
}

impl fmt::Display for Compute {
    /// For `/info` and the start-up log, e.g. `host encoder, avx2 kernels (AVX2 + FMA), f32`,
    /// or `candle (the host encoder runs ... only), cpu f32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compute::Candle {
                device,
                dtype,
                reason,
            } => {
                write!(f, "candle")?;
                if let Some(reason) = reason {
                    write!(f, " ({reason})")?;
                }
                write!(
                    f,
                    ", {} {}",
                    crate::device::describe(device),
                    dtype_name(*dtype)
                )
            }
            Compute::Host { isa, weights } => {
                let level = isa.level();
                write!(
                    f,
                    "host encoder, {level} kernels ({}), {}",
                    level.features(),
                    weights.describe(*isa)
                )
            }
        }
    }
}

/// The weight format of the host encoder's products for `asked` at `isa` (the fastest this
/// CPU has there), warning where it has no hardware for it; `None` for f16, which the host
/// encoder does not run.
///
/// AMX's tiles serve bf16 and int8 at `auto` and `amx` (where `amx` is an error naming what
/// this CPU lacks), never at an explicit level.
fn host_format(
    asked: Dtype,
    isa: Isa,
    kernels: CpuKernels,
    warnings: &mut Vec<String>,
) -> Result<Option<WeightFormat>, String> {
    Ok(Some(match asked {
        Dtype::F32 => {
            if kernels == CpuKernels::Amx {
                warnings.push(
                    "--cpu-kernels amx: f32 products run on AVX-512; AMX's tiles serve --dtype bf16 and int8".into(),
                );
            }
            WeightFormat::F32
        }
        Dtype::Int8 => match (
            isa,
            amx_token(kernels, AmxInt8::detect, AmxInt8::missing)?,
            Avx512Vnni::detect(),
        ) {
            (Isa::Avx512(_), Some(token), _) => WeightFormat::Int8Amx(token),
            (Isa::Avx512(_), None, Some(token)) => WeightFormat::Int8Vnni(token),
            (Isa::Avx512(_) | Isa::Avx2(_), _, _) => WeightFormat::Int8,
            (Isa::Neon(_) | Isa::Portable, _, _) => {
                warnings.push(format!(
                    "--dtype int8: the {} level has no integer dot-product kernel here (that needs AVX2 or AVX-512), so int8 runs on plain loops: the same results, slower than f32. Use --dtype f32 here",
                    isa.level()
                ));
                WeightFormat::Int8
            }
        },
        Dtype::Bf16 => match (
            isa,
            amx_token(kernels, AmxBf16::detect, AmxBf16::missing)?,
            Avx512Bf16::detect(),
        ) {
            (Isa::Avx512(_), Some(token), _) => WeightFormat::Bf16Amx(token),
            (Isa::Avx512(_), None, Some(token)) => WeightFormat::Bf16(token),
            _ => {
                warnings.push(format!(
                    "--dtype bf16: {} has no bf16 arithmetic (that needs AVX512-BF16 at --cpu-kernels avx512), so bf16 is emulated on the f32 kernels: no faster than f32, with bf16's rounding. Use --dtype f32 here",
                    match kernels {
                        CpuKernels::Auto => "this CPU".to_string(),
                        _ => format!("--cpu-kernels {}", isa.level()),
                    }
                ));
                WeightFormat::Bf16Emulated
            }
        },
        Dtype::F16 => return Ok(None),
    }))
}

/// The AMX token `detect` gives, where `kernels` may use AMX: at `auto` if the CPU has it, at
/// `amx` or an error naming what this CPU lacks, otherwise never.
fn amx_token<T>(
    kernels: CpuKernels,
    detect: fn() -> Option<T>,
    missing: fn() -> Vec<&'static str>,
) -> Result<Option<T>, String> {
    match kernels {
        CpuKernels::Auto => Ok(detect()),
        CpuKernels::Amx => detect().map(Some).ok_or_else(|| amx_missing(missing())),
        _ => Ok(None),
    }
}

/// The start-up error of `--cpu-kernels amx` on a CPU that lacks `missing`.
fn amx_missing(missing: Vec<&'static str>) -> String {
    format!(
        "this CPU cannot run --cpu-kernels amx (AMX tiles for bf16 and int8 products): it lacks {}",
        missing.join(", ")
    )
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

trait PossibleValueName {
    fn to_possible_value_name(&self) -> String;
}

impl<T: clap::ValueEnum> PossibleValueName for T {
    fn to_possible_value_name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "compute_tests.rs"]
mod tests;
