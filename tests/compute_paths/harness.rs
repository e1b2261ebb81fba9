//! What `compute_paths.rs` shares with the aarch64 kernels crate's test binary
//! (`.ci/aarch64-kernels/tests/kernels.rs`, which runs `kernels.rs` under qemu in CI): trials
//! that run where their path exists and are reported ignored, with the reason, where it does
//! not; and the x86 products with features beyond their level.

use libtest_mimic::{Failed, Trial};
use sentiment_server::model::cpu::{AmxBf16, AmxInt8, Avx512Bf16, Avx512Vnni, Isa, WeightFormat};

/// A trial that runs `check(path)` when `path` (a `Compute`, an `Isa`...) is available, and is
/// ignored with the reason otherwise (and fails with it under `--include-ignored`).
pub fn trial<T, F>(name: String, path: Result<T, String>, check: F) -> Trial
where
    T: Send + 'static,
    F: FnOnce(T) + Send + 'static,
{
    match path {
        Ok(path) => Trial::test(name, move || catch(move || check(path))),
        Err(why) => {
            // The kind column is as wide as its longest entry: keep it to what is missing.
            let kind = match why.rsplit_once("lacks ") {
                Some((_, missing)) => format!("not run: CPU lacks {missing}"),
                None => format!("not run: {why}"),
            };
            Trial::test(name, move || Err(Failed::from(why)))
                .with_ignored_flag(true)
                .with_kind(kind)
        }
    }
}

/// Runs `f`, turning a panic (a failed assertion) into the trial's failure message.
fn catch(f: impl FnOnce()) -> Result<(), Failed> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        Failed::from(message)
    })
}

/// bf16 products on AVX512-BF16, or why this CPU cannot run them.
pub fn bf16_hardware() -> Result<(Isa, WeightFormat), String> {
    Avx512Bf16::detect()
        .map(|token| (Isa::Avx512(token.avx512()), WeightFormat::Bf16(token)))
        .ok_or_else(|| format!("this CPU lacks {}", Avx512Bf16::missing().join(", ")))
}

/// int8 products on AVX512-VNNI, or why this CPU cannot run them.
pub fn vnni_int8() -> Result<(Isa, WeightFormat), String> {
    Avx512Vnni::detect()
        .map(|token| (Isa::Avx512(token.avx512()), WeightFormat::Int8Vnni(token)))
        .ok_or_else(|| format!("this CPU lacks {}", Avx512Vnni::missing().join(", ")))
}

/// bf16 products on AMX's tiles, or why this CPU (or this process) cannot run them.
pub fn amx_bf16() -> Result<(Isa, WeightFormat), String> {
    AmxBf16::detect()
        .map(|token| {
            (
                Isa::Avx512(token.bf16().avx512()),
                WeightFormat::Bf16Amx(token),
            )
        })
        .ok_or_else(|| format!("this CPU lacks {}", AmxBf16::missing().join(", ")))
}

/// int8 products on AMX's tiles, or why this CPU (or this process) cannot run them.
pub fn amx_int8() -> Result<(Isa, WeightFormat), String> {
    AmxInt8::detect()
        .map(|token| {
            (
                Isa::Avx512(token.vnni().avx512()),
                WeightFormat::Int8Amx(token),
            )
        })
        .ok_or_else(|| format!("this CPU lacks {}", AmxInt8::missing().join(", ")))
}
