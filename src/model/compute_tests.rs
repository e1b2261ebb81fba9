//! The decision of [`super::Compute::decide`], for every device, level, dtype and family.

use super::*;
use crate::model::cpu::Avx512;

const BERT: Family = Family::Bert;

#[test]
fn auto_picks_the_best_level_and_candle_is_candle() {
    let d = Compute::decide(&Device::Cpu, Dtype::F32, CpuKernels::Auto, BERT).unwrap();
    assert_eq!(d.compute.kernels(), Isa::best().level().name());
    assert!(d.warnings.is_empty());
    let d = Compute::decide(&Device::Cpu, Dtype::F32, CpuKernels::Candle, BERT).unwrap();
    assert_eq!(d.compute.kernels(), "candle");
}

#[test]
fn a_level_the_cpu_lacks_is_an_error_naming_it() {
    for (kernels, level) in [
        (CpuKernels::Avx512, Level::Avx512),
        (CpuKernels::Avx2, Level::Avx2),
        (CpuKernels::Neon, Level::Neon),
    ] {
        match (
            Compute::decide(&Device::Cpu, Dtype::F32, kernels, BERT),
            Isa::detect(level),
        ) {
            (Ok(d), Ok(_)) => assert_eq!(d.compute.kernels(), level.name()),
            (Err(e), Err(_)) => {
                assert!(e.contains(level.name()) && e.contains("lacks"), "{e}")
            }
            (got, _) => panic!("{level}: {got:?}"),
        }
    }
    // Neon and the x86 levels never both exist.
    assert!(Isa::detect(Level::Neon).is_err() || Isa::detect(Level::Avx2).is_err());
}

#[test]
fn dtypes_without_hardware_warn_and_say_what_to_use() {
    let d = Compute::decide(&Device::Cpu, Dtype::Bf16, CpuKernels::Portable, BERT).unwrap();
    assert!(matches!(
        d.compute,
        Compute::Host {
            weights: WeightFormat::Bf16Emulated,
            ..
        }
    ));
    assert!(
        d.warnings[0].contains("Use --dtype f32"),
        "{:?}",
        d.warnings
    );
    let d = Compute::decide(&Device::Cpu, Dtype::F16, CpuKernels::Auto, BERT).unwrap();
    assert_eq!(d.compute.kernels(), "candle");
    assert!(
        d.warnings[0].contains("Use --dtype f32"),
        "{:?}",
        d.warnings
    );
    let d = Compute::decide(&Device::Cpu, Dtype::Bf16, CpuKernels::Candle, BERT).unwrap();
    assert!(
        d.warnings[0].contains("half the f32 speed"),
        "{:?}",
        d.warnings
    );
    let bf16 = Compute::decide(&Device::Cpu, Dtype::Bf16, CpuKernels::Auto, BERT).unwrap();
    match Avx512Bf16::detect() {
        Some(_) => assert!(bf16.warnings.is_empty(), "{:?}", bf16.warnings),
        None => assert_eq!(bf16.warnings.len(), 1),
    }
}

#[test]
fn int8_runs_on_the_host_kernels_and_says_where_it_cannot() {
    let d = Compute::decide(&Device::Cpu, Dtype::Int8, CpuKernels::Auto, BERT).unwrap();
    assert_eq!(d.compute.dtype(), "int8");
    match (&d.compute, Avx512Vnni::detect()) {
        (
            Compute::Host {
                isa: Isa::Avx512(_),
                weights,
            },
            Some(_),
        ) if AmxInt8::detect().is_some() => {
            assert!(matches!(weights, WeightFormat::Int8Amx(_)));
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
            assert!(d.compute.to_string().ends_with("int8 (AMX tiles)"));
        }
        (
            Compute::Host {
                isa: Isa::Avx512(_),
                weights,
            },
            Some(_),
        ) => {
            assert!(matches!(weights, WeightFormat::Int8Vnni(_)));
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
            assert!(d.compute.to_string().ends_with("int8 (AVX512-VNNI)"));
        }
        (
            Compute::Host {
                isa: Isa::Avx512(_) | Isa::Avx2(_),
                weights,
            },
            _,
        ) => {
            assert!(matches!(weights, WeightFormat::Int8));
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        }
        (compute, _) => assert!(compute.to_string().contains("plain loops")),
    }
    // A level without an integer dot-product kernel: plain loops, said at start-up and in
    // /info's `compute`.
    let d = Compute::decide(&Device::Cpu, Dtype::Int8, CpuKernels::Portable, BERT).unwrap();
    assert_eq!(d.compute.dtype(), "int8");
    assert!(
        d.compute.to_string().contains("int8 on plain loops"),
        "{}",
        d.compute
    );
    assert!(
        d.warnings[0].contains("Use --dtype f32"),
        "{:?}",
        d.warnings
    );
    // Where candle's ops run the model: f32, with a warning that says so.
    {
        let d = Compute::decide(&Device::Cpu, Dtype::Int8, CpuKernels::Candle, BERT).unwrap();
        assert_eq!((d.compute.kernels(), d.compute.dtype()), ("candle", "f32"));
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("--dtype int8") && w.contains("runs in f32")),
            "{:?}",
            d.warnings
        );
    }
}

#[test]
fn every_family_runs_on_the_host_encoder_at_every_level_and_dtype() {
    for &family in Family::ALL {
        assert!(family.runs_on_host(), "{family:?}");
        for dtype in [Dtype::F32, Dtype::Int8] {
            let d = Compute::decide(&Device::Cpu, dtype, CpuKernels::Portable, family).unwrap();
            assert_eq!(d.compute.kernels(), "portable", "{family:?} {dtype:?}");
        }
        let d = Compute::decide(&Device::Cpu, Dtype::F32, CpuKernels::Auto, family).unwrap();
        assert_ne!(d.compute.kernels(), "candle", "{family:?}");
        assert!(d.warnings.is_empty(), "{family:?}: {:?}", d.warnings);
    }
}

/// AMX's tiles serve bf16 and int8 at `auto` where the CPU has them and at `amx` (a start-up
/// error naming what is missing elsewhere), never at an explicit level; f32 at `amx` runs
/// AVX-512's products and says so.
#[test]
fn amx_tiles_serve_bf16_and_int8_at_auto_and_amx_only() {
    for (dtype, amx) in [
        (Dtype::Int8, AmxInt8::detect().is_some()),
        (Dtype::Bf16, AmxBf16::detect().is_some()),
    ] {
        let tiles = |kernels| match Compute::decide(&Device::Cpu, dtype, kernels, BERT) {
            Ok(d) => Ok(d.compute.to_string().contains("(AMX tiles)")),
            Err(e) => Err(e),
        };
        assert_eq!(tiles(CpuKernels::Auto), Ok(amx), "{dtype:?}");
        match tiles(CpuKernels::Amx) {
            Ok(used) => assert!(used && amx, "{dtype:?}"),
            Err(e) => {
                assert!(!amx, "{e}");
                assert!(
                    e.contains("--cpu-kernels amx") && e.contains("lacks"),
                    "{e}"
                );
            }
        }
        if Avx512::detect().is_some() {
            assert_eq!(tiles(CpuKernels::Avx512), Ok(false), "{dtype:?}");
        }
    }
    if let Ok(d) = Compute::decide(&Device::Cpu, Dtype::F32, CpuKernels::Amx, BERT) {
        assert_eq!(d.compute.dtype(), "f32");
        assert!(
            d.warnings[0].contains("f32 products run on AVX-512"),
            "{:?}",
            d.warnings
        );
    }
}
