//! Every CPU compute path this machine can run, checked; every one it cannot, reported as
//! ignored by name with the reason (`test [not run: ...] parity::avx512::... ignored`).
//!
//! - `parity::<path>::<model>`: PyTorch parity to 1e-4 for every shared model, on candle's
//!   ops and on the host encoder at each kernel level (avx512, avx2, neon, portable); the
//!   host encoder runs every family (a family it did not would have candle's path alone).
//! - `long_inputs::<level>`: the host encoder against candle's ops on what the references do
//!   not cover: attention over up to 512 tokens, batched with one-token inputs, and
//!   ModernBERT's mean pooling.
//! - `bf16::<path>`: bf16 (AVX512-BF16, or emulated on the f32 kernels) keeps the f32
//!   decisions on SST-2 validation, and every shared fixture's scores (every family) stay
//!   within [`BF16_SCORE_TOLERANCE`] of PyTorch's fp32 ones.
//! - `int8::<path>`: int8 keeps the f32 decisions on SST-2 validation (99%, accuracy within
//!   a point), and every shared fixture's scores stay within [`INT8_SCORE_TOLERANCE`] of
//!   PyTorch's fp32 ones.
//! - `rerank::<path>`, `rerank::int8::<level>`: the cross-encoder fixture's rankings against
//!   transformers' (logits, sigmoid scores and order in f32; int8 scores within tolerance).
//! - `token_logits::<path>`: the token classifier's per-token logits against PyTorch's to
//!   1e-4 on each path, one text at a time and batched (int8: the same label on 90% of the
//!   tokens, scores within [`INT8_TOKEN_MEAN_TOLERANCE`] on average).
//! - `kernels::<level>::<op>`: each kernel and row operation against a plain scalar version
//!   on odd shapes.
//!
//! A machine with AVX-512 runs every x86 level (a level's code only needs its own features),
//! so there every x86 path is checked. `-- --include-ignored` runs the others too: they fail,
//! naming the missing features.

#[path = "compute_paths/attention.rs"]
mod attention;
#[path = "testsuite/common/mod.rs"]
mod common;
#[path = "compute_paths/harness.rs"]
mod harness;
#[path = "compute_paths/kernels.rs"]
mod kernels;
#[path = "compute_paths/rerank.rs"]
mod rerank;

use candle_core::{DType, Device};
use harness::{amx_bf16, amx_int8, bf16_hardware, trial, vnni_int8};
use libtest_mimic::{Arguments, Trial};
use sentiment_server::model::cpu::{Isa, Level, WeightFormat};
use sentiment_server::model::Compute;
use sentiment_server::types::Backend;
use sentiment_server::types::Encoded;
use std::path::PathBuf;

/// A CPU compute path: candle's ops, or the host encoder at a kernel level.
#[derive(Clone, Copy, Debug)]
enum Path {
    Candle,
    Host(Level),
}

impl Path {
    fn all() -> Vec<Path> {
        std::iter::once(Path::Candle)
            .chain(Level::ALL.into_iter().map(Path::Host))
            .collect()
    }

    fn name(self) -> String {
        match self {
            Path::Candle => "candle".into(),
            Path::Host(level) => level.name().into(),
        }
    }

    /// The path in f32, or why this CPU cannot run it.
    fn compute(self) -> Result<Compute, String> {
        match self {
            Path::Candle => Ok(Compute::candle(Device::Cpu, DType::F32)),
            Path::Host(level) => Isa::detect(level).map(|isa| Compute::Host {
                isa,
                weights: WeightFormat::F32,
            }),
        }
    }
}

/// Whether the host encoder implements the model's architecture.
fn runs_on_host(dir: &std::path::Path) -> bool {
    sentiment_server::checkpoint::ModelFiles::locate(dir)
        .and_then(|files| files.read_config())
        .expect("model config")
        .family
        .runs_on_host()
}

fn model_name(dir: &std::path::Path) -> String {
    dir.file_name().unwrap().to_string_lossy().to_string()
}

fn parity_trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for path in Path::all() {
        for dir in common::reference_models() {
            // The host encoder runs some architectures only: the others have no host
            // path to check (not a path this machine lacks, so not listed as ignored).
            if matches!(path, Path::Host(_)) && !runs_on_host(&dir) {
                continue;
            }
            let name = format!("parity::{}::{}", path.name(), model_name(&dir));
            trials.push(trial(name, path.compute(), move |compute| {
                let m = common::load_model_with(&dir, &compute);
                common::parity::check_references(&m, &dir, 1e-4);
            }));
        }
    }
    trials
}

/// The host encoder agrees with candle's ops to 1e-4 from 1 to 512 tokens, in one batch;
/// and each sequence alone gives what it gave in the batch (no row leaks into another).
/// ModernBERT runs twice: as its fixture pools (`cls`) and with `mean` pooling, which no
/// reference covers.
fn long_inputs(compute: Compute) {
    let sentences: Vec<String> = common::sst2_dev().into_iter().map(|(_, t)| t).collect();
    let mut models: Vec<PathBuf> = vec![common::minilm()];
    models.extend(
        common::reference_models()
            .into_iter()
            .filter(|d| runs_on_host(d)),
    );
    models.dedup();
    for dir in &models {
        host_against_candle(dir, &model_name(dir), &compute, &sentences);
    }
    let modernbert = common::more_fixture("modernbert-tiny-3class");
    if runs_on_host(&modernbert) {
        let mean = common::model_copy(&modernbert, |d| {
            common::edit_json(&d.join("config.json"), |c| {
                c["classifier_pooling"] = "mean".into()
            })
        });
        host_against_candle(
            mean.path(),
            "modernbert-tiny-3class (mean pooling)",
            &compute,
            &sentences,
        );
    }
}

fn host_against_candle(dir: &std::path::Path, name: &str, compute: &Compute, sentences: &[String]) {
    let host = common::load_model_with(dir, compute);
    let reference = common::load_model_with(dir, &Compute::candle(Device::Cpu, DType::F32));
    let texts: Vec<String> = [1, 3, 9, 40, 200]
        .iter()
        .map(|&n| sentences[..n].join(" "))
        .chain(["ok".to_string()])
        .collect();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| host.tokenizer.encode(t).unwrap())
        .collect();
    let lengths: Vec<usize> = encoded.iter().map(|e| e.len()).collect();
    assert!(
        lengths.iter().any(|&l| l > 128) && lengths.iter().any(|&l| l <= 5),
        "{name}: {lengths:?}"
    );
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let got = host.backend.forward(&refs).expect("host forward");
    let want = reference.backend.forward(&refs).expect("candle forward");
    for ((g, w), len) in got.iter().zip(&want).zip(&lengths) {
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name}, {len} tokens: {g:?} vs {w:?}"
            );
        }
    }
    for (e, g) in encoded.iter().zip(&got) {
        let alone = host.backend.forward(&[e]).expect("forward").remove(0);
        for (a, b) in alone.iter().zip(g) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{name}: {alone:?} vs {g:?}"
            );
        }
    }
}

/// bf16 on `compute` agrees with the same level's f32 on at least 99.5% of SST-2 validation's
/// top labels, with accuracy within half a point, and on every shared fixture the host encoder
/// runs its scores are within [`BF16_SCORE_TOLERANCE`] of PyTorch's fp32 ones.
fn bf16_agreement(compute: Compute) {
    let Compute::Host { isa, .. } = compute else {
        panic!("bf16 is checked on the host encoder")
    };
    let dir = common::minilm();
    let data = common::sst2_dev();
    let f32_model = common::load_model_with(
        &dir,
        &Compute::Host {
            isa,
            weights: WeightFormat::F32,
        },
    );
    let f32_labels = common::parity::sst2_labels(&f32_model, &data);
    let bf16_labels = common::parity::sst2_labels(&common::load_model_with(&dir, &compute), &data);
    let (a32, a16, agreement) =
        common::parity::check_agreement(&f32_labels, &bf16_labels, &data, 0.995, 0.005);
    eprintln!("{compute}: f32 accuracy {a32:.4}, bf16 {a16:.4}, agreement {agreement:.4}");
    fixtures_within(compute, "bf16", BF16_SCORE_TOLERANCE);
}

/// The largest difference of a bf16 score from PyTorch's fp32 one on any shared fixture
/// (every family). Measured on Zen 4, AVX512-BF16 and emulated alike: minilm-sst2 0.012, the
/// tiny fixtures 0.018-0.058, electra-tiny-2class 0.14 (its 16-wide embeddings projected to
/// 32: random tiny layers amplify rounding, as with int8).
const BF16_SCORE_TOLERANCE: f32 = 0.2;

/// The largest difference of an int8 score (a probability) from PyTorch's fp32 one on any
/// shared fixture, one text at a time or batched, with 8-bit activation codes (VNNI, plain
/// loops). Measured: 0.08-0.12 (the tiny fixtures' random 32-wide layers and minilm-sst2
/// alike; a float simulation of the same scheme in PyTorch gives the same figures), where
/// PyTorch's own `quantize_dynamic` reaches 0.10-0.29 on the tiny fixtures and 0.93 (a flipped
/// decision) on minilm-sst2 (BENCHMARKS.md).
const INT8_SCORE_TOLERANCE: f32 = 0.15;

/// The same with the 7-bit activation codes of the `vpmaddubsw` kernels (int8 at the avx2
/// level, and at avx512 without VNNI). Measured: 0.08-0.24 (roberta-tiny-3class the
/// largest, minilm-sst2 0.18).
const INT8_7BIT_SCORE_TOLERANCE: f32 = 0.3;

/// int8 on `compute` agrees with the same level's f32 on at least 99% of SST-2 validation's
/// top labels, with accuracy within a point; on every shared fixture the host encoder runs,
/// its scores are within [`INT8_SCORE_TOLERANCE`] of PyTorch's fp32 ones (or
/// [`INT8_7BIT_SCORE_TOLERANCE`] for the kernels with 7-bit activation codes).
fn int8_agreement(compute: Compute) {
    let Compute::Host { isa, weights } = compute else {
        panic!("int8 is checked on the host encoder")
    };
    let tolerance = match (isa, weights) {
        (Isa::Avx2(_) | Isa::Avx512(_), WeightFormat::Int8) => INT8_7BIT_SCORE_TOLERANCE,
        _ => INT8_SCORE_TOLERANCE,
    };
    let dir = common::minilm();
    let data = common::sst2_dev();
    let f32_compute = Compute::Host {
        isa,
        weights: WeightFormat::F32,
    };
    let f32_labels =
        common::parity::sst2_labels(&common::load_model_with(&dir, &f32_compute), &data);
    let int8_labels = common::parity::sst2_labels(&common::load_model_with(&dir, &compute), &data);
    let (a32, a8, agreement) =
        common::parity::check_agreement(&f32_labels, &int8_labels, &data, 0.99, 0.01);
    eprintln!("{compute}: f32 accuracy {a32:.4}, int8 {a8:.4}, agreement {agreement:.4}");
    fixtures_within(compute, "int8", tolerance);
}

/// Every shared fixture the host encoder runs, on `compute`: its scores within `tolerance` of
/// PyTorch's fp32 ones (`what` names the dtype in the message).
fn fixtures_within(compute: Compute, what: &str, tolerance: f32) {
    let mut failed = Vec::new();
    for dir in common::reference_models() {
        if !runs_on_host(&dir) {
            continue;
        }
        let m = common::load_model_with(&dir, &compute);
        let (logits, scores) = common::parity::reference_differences(&m, &dir);
        let name = model_name(&dir);
        eprintln!(
            "{compute}, {name}: largest difference from PyTorch fp32: logits {logits:.4}, scores {scores:.4}"
        );
        if scores > tolerance {
            failed.push(format!("{name}: {scores}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{what} scores further than {tolerance} from fp32's: {failed:?}"
    );
}

/// The NER fixture's per-token logits (`none` rows: `input_ids`, `logits`) on `compute`: the
/// same ids, logits within `tolerance` of PyTorch's (or with `scores`, softmax scores), alone
/// and in one batch.
fn token_logits(compute: Compute, tolerance: f32, scores: bool) {
    let dir = common::more_fixture("bert-tiny-ner");
    let m = common::load_model_with(&dir, &compute);
    let text = std::fs::read_to_string(dir.join("reference.jsonl")).expect("reference");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["aggregation_strategy"] == "none")
        .collect();
    let softmax = |row: &[f32]| -> Vec<f32> {
        let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|x| (x - top).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.into_iter().map(|x| x / sum).collect()
    };
    let encoded: Vec<Encoded> = rows
        .iter()
        .map(|r| m.tokenizer.encode(r["text"].as_str().unwrap()).unwrap())
        .collect();
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let batched = m.backend.forward(&refs).expect("batched forward");
    let (mut worst, mut total, mut count, mut agree, mut tokens) = (0f32, 0f32, 0usize, 0, 0);
    for ((row, e), together) in rows.iter().zip(&encoded).zip(&batched) {
        let ids: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
        assert_eq!(e.ids, ids, "{}", row["text"]);
        let want: Vec<Vec<f32>> = serde_json::from_value(row["logits"].clone()).unwrap();
        let alone = m.backend.forward(&[e]).expect("forward").remove(0);
        for got in [&alone, together] {
            let labels = want[0].len();
            assert_eq!(got.len(), want.len() * labels);
            for (g, w) in got.chunks_exact(labels).zip(&want) {
                let (g, w) = if scores {
                    (softmax(g), softmax(w))
                } else {
                    (g.to_vec(), w.clone())
                };
                for (a, b) in g.iter().zip(&w) {
                    worst = worst.max((a - b).abs());
                    total += (a - b).abs();
                    count += 1;
                }
                let argmax =
                    |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
                agree += usize::from(argmax(&g) == argmax(&w));
                tokens += 1;
            }
        }
    }
    let (mean, agreement) = (total / count as f32, agree as f32 / tokens as f32);
    eprintln!(
        "{compute}: per-token difference from PyTorch: largest {worst:.6}, mean {mean:.6}; \
         same label on {agreement:.4} of tokens"
    );
    if scores {
        // int8: each token's scores move by quantization noise, and the random fixture's
        // near-uniform tokens change labels (measured: 92.5% kept with 7-bit codes).
        assert!(mean <= tolerance && agreement >= 0.9, "{compute}");
    } else {
        assert!(worst <= tolerance, "{compute}: {worst} > {tolerance}");
    }
}

/// The mean difference of an int8 per-token score from PyTorch's fp32 one on the NER fixture
/// (measured 0.011 with 7-bit codes; the largest, over its 1,000-odd tokens of random
/// 32-wide layers with near-uniform scores, 0.36).
const INT8_TOKEN_MEAN_TOLERANCE: f32 = 0.03;

fn token_trials() -> Vec<Trial> {
    let mut trials: Vec<Trial> = Path::all()
        .into_iter()
        .map(|path| {
            trial(
                format!("token_logits::{}", path.name()),
                path.compute(),
                |c| token_logits(c, 1e-4, false),
            )
        })
        .collect();
    let best = Isa::best();
    trials.push(trial(
        format!("token_logits::int8::{}", best.level().name()),
        Ok(Compute::Host {
            isa: best,
            weights: WeightFormat::Int8,
        }),
        |c| token_logits(c, INT8_TOKEN_MEAN_TOLERANCE, true),
    ));
    trials
}

/// The host encoder at `isa`, products in `weights`.
fn host((isa, weights): (Isa, WeightFormat)) -> Compute {
    Compute::Host { isa, weights }
}

/// Every int8 kernel this machine has: VNNI, and `vpmaddubsw` or plain loops at each level.
fn int8_trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    let vnni = vnni_int8().map(host);
    trials.push(trial("int8::avx512-vnni".into(), vnni, int8_agreement));
    // minilm-sst2's products all take AMX's tiles (k 384 and 1,536); the 32-wide fixtures'
    // run on VNNI (rows of k under 64).
    let amx = amx_int8().map(host);
    trials.push(trial("int8::amx-int8".into(), amx, int8_agreement));
    for level in Level::ALL {
        let compute = Isa::detect(level).map(|isa| Compute::Host {
            isa,
            weights: WeightFormat::Int8,
        });
        trials.push(trial(
            format!("int8::{}", level.name()),
            compute,
            int8_agreement,
        ));
    }
    trials
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = parity_trials();
    for level in Level::ALL {
        let path = Path::Host(level);
        trials.push(trial(
            format!("long_inputs::{}", level.name()),
            path.compute(),
            long_inputs,
        ));
    }
    let hardware = bf16_hardware().map(host);
    trials.push(trial("bf16::avx512-bf16".into(), hardware, bf16_agreement));
    let amx = amx_bf16().map(host);
    trials.push(trial("bf16::amx-bf16".into(), amx, bf16_agreement));
    let best = Isa::best();
    trials.push(trial(
        format!("bf16::emulated::{}", best.level().name()),
        Ok(Compute::Host {
            isa: best,
            weights: WeightFormat::Bf16Emulated,
        }),
        bf16_agreement,
    ));
    trials.extend(int8_trials());
    trials.extend(token_trials());
    trials.extend(kernels::trials());
    trials.extend(attention::trials());
    trials.extend(rerank::trials());
    let runnable: Vec<&str> = Level::ALL
        .into_iter()
        .filter(|l| Isa::detect(*l).is_ok())
        .map(Level::name)
        .collect();
    eprintln!(
        "CPU kernel levels this machine runs: {} (plus candle's ops); the others are reported as ignored",
        runnable.join(", ")
    );
    libtest_mimic::run(&args, trials).exit();
}
