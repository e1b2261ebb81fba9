//! Numerical parity with PyTorch/transformers: for every shared model, token ids equal the
//! references exactly and scores match in fp32, one text at a time and in batches that mix
//! lengths: to 1e-4 on the CPU, to 1e-3 on a GPU. `TEST_DEVICE` picks the device (`cpu` by
//! default, `cuda` or `cuda:N` with a `--features cuda` build).

mod common;

use candle_core::DType;
use sentiment_server::batcher::Backend;
use sentiment_server::model::{self, ModelBackend};
use sentiment_server::postprocess::scores;
use sentiment_server::tokenize::{Encoded, TextTokenizer};

struct Loaded {
    backend: ModelBackend,
    tokenizer: TextTokenizer,
    score_function: sentiment_server::model::ScoreFunction,
    labels: Vec<String>,
    tolerance: f32,
}

fn load(dir: &std::path::Path) -> Loaded {
    let device = common::test_device();
    let m = common::load_model(dir, &device, DType::F32);
    Loaded {
        score_function: m.config.score_function,
        labels: m.config.labels,
        backend: m.backend,
        tokenizer: m.tokenizer,
        tolerance: common::parity_tolerance(&device),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tolerance,
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn every_model_matches_pytorch_one_text_at_a_time_and_in_mixed_batches() {
    for dir in common::reference_models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let m = load(&dir);
        let refs = common::references(&dir);
        assert!(refs.len() >= 50, "{name}: too few references");
        let encoded: Vec<Encoded> = refs
            .iter()
            .map(|r| m.tokenizer.encode(&r.text).expect("encode"))
            .collect();
        for (r, e) in refs.iter().zip(&encoded) {
            assert_eq!(e.ids, r.input_ids, "{name}: token ids of {:?}", r.text);
        }
        // One at a time.
        for (r, e) in refs.iter().zip(&encoded) {
            let logits = m.backend.forward(&[e]).expect("forward").remove(0);
            let what = format!("{name} single {:?}", r.text);
            assert_close(&what, &logits, &r.logits, m.tolerance);
            assert_close(
                &what,
                &scores(&logits, m.score_function, false),
                &r.scores,
                m.tolerance,
            );
            let best = scores(&logits, m.score_function, false)
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| m.labels[i].clone())
                .unwrap();
            assert_eq!(best, r.label, "{what}: label");
        }
        // Batches of 7 in file order: short and long texts (up to 512 tokens) padded together.
        for (chunk_refs, chunk) in refs.chunks(7).zip(encoded.chunks(7)) {
            let lens: Vec<usize> = chunk.iter().map(|e| e.len()).collect();
            let batch: Vec<&Encoded> = chunk.iter().collect();
            let rows = m.backend.forward(&batch).expect("batch forward");
            for (r, row) in chunk_refs.iter().zip(&rows) {
                let what = format!("{name} batch {lens:?} {:?}", r.text);
                assert_close(&what, row, &r.logits, m.tolerance);
                assert_close(
                    &what,
                    &scores(row, m.score_function, false),
                    &r.scores,
                    m.tolerance,
                );
            }
        }
    }
}

#[test]
fn long_inputs_truncate_at_the_model_maximum_not_the_tokenizer_file_padding() {
    // minilm-sst2's tokenizer.json carries padding and truncation at 128; transformers
    // ignores both and truncates at model_max_length (512).
    let m = load(&common::minilm());
    assert_eq!(m.tokenizer.max_length(), 512);
    let long = "word ".repeat(1000);
    let e = m.tokenizer.encode(&long).unwrap();
    assert_eq!(e.len(), 512);
    assert!(e.truncated);
    let short = m.tokenizer.encode("short text").unwrap();
    assert!(short.len() < 10, "no fixed padding: {}", short.len());
    assert!(!short.truncated);
}

#[test]
fn roberta_max_length_accounts_for_the_position_offset() {
    let m = load(&common::fixture("roberta-tiny-3class"));
    assert_eq!(m.tokenizer.max_length(), 512);
    let e = m.tokenizer.encode(&"hello ".repeat(2000)).unwrap();
    assert_eq!(e.len(), 512);
    // The longest input still runs: positions up to padding_idx + 512 exist.
    m.backend.forward(&[&e]).expect("forward at max length");
}

/// `--dtype bf16` (weights and the inputs of each product rounded to bf16, sums in f32) keeps
/// the classifier's decisions: on all 872 SST-2 validation sentences the top label agrees with
/// f32 on at least 99.5% and accuracy stays within half a point.
#[test]
fn bf16_keeps_the_f32_decisions_on_sst2_validation() {
    let device = common::test_device();
    if device.is_cpu() && !model::kernels::PackKind::available(model::kernels::PackKind::Bf16) {
        eprintln!("skipped: this CPU has no AVX512-BF16 (candle's own CPU bf16 path is too slow)");
        return;
    }
    let dir = common::minilm();
    let data = common::sst2_dev();
    let run = |dtype: DType| -> Vec<usize> {
        let common::TestModel {
            backend, tokenizer, ..
        } = common::load_model(&dir, &device, dtype);
        if device.is_cpu() && dtype == DType::BF16 {
            assert_eq!(
                backend.classifier.compute(),
                "host encoder, AVX512-BF16 kernels"
            );
        }
        let encoded: Vec<Encoded> = data
            .iter()
            .map(|(_, text)| tokenizer.encode(text).expect("encode"))
            .collect();
        encoded
            .chunks(32)
            .flat_map(|chunk| {
                let refs: Vec<&Encoded> = chunk.iter().collect();
                backend.forward(&refs).expect("forward")
            })
            .map(|logits| usize::from(logits[1] > logits[0]))
            .collect()
    };
    let (f32_labels, bf16_labels) = (run(DType::F32), run(DType::BF16));
    let n = data.len() as f64;
    let accuracy = |labels: &[usize]| {
        labels
            .iter()
            .zip(&data)
            .filter(|(p, (y, _))| *p == y)
            .count() as f64
            / n
    };
    let agreement = f32_labels
        .iter()
        .zip(&bf16_labels)
        .filter(|(a, b)| a == b)
        .count() as f64
        / n;
    let (acc32, acc16) = (accuracy(&f32_labels), accuracy(&bf16_labels));
    eprintln!(
        "SST-2 validation: f32 accuracy {acc32:.4}, bf16 {acc16:.4}, agreement {agreement:.4}"
    );
    assert!(
        agreement >= 0.995,
        "bf16 agrees with f32 on {agreement:.4} of the labels"
    );
    assert!(
        (acc32 - acc16).abs() <= 0.005,
        "accuracy f32 {acc32:.4} vs bf16 {acc16:.4}"
    );
    // The shared model's PyTorch fp32 accuracy.
    assert!((acc32 - 0.8968).abs() < 0.002, "f32 accuracy {acc32:.4}");
}
