//! Numerical parity with PyTorch/transformers on the device the server would use: for every
//! shared model, token ids equal the references exactly and scores match in fp32, one text at a
//! time and in batches that mix lengths: to 1e-4 on the CPU, to 1e-3 on a GPU. `TEST_DEVICE`
//! picks the device (`cpu` by default, `cuda` or `cuda:N` with a `--features cuda` build).
//! On the CPU this is the path `--cpu-kernels auto` picks; tests/compute_paths.rs checks every
//! other CPU path the machine can run, and names the ones it cannot.

use crate::common;

use candle_core::DType;
use sentiment_server::batcher::Backend;

fn load(dir: &std::path::Path) -> common::TestModel {
    common::load_model(dir, &common::test_device(), DType::F32)
}

#[test]
fn every_model_matches_pytorch_one_text_at_a_time_and_in_mixed_batches() {
    let tolerance = common::parity_tolerance(&common::test_device());
    for dir in common::reference_models() {
        common::parity::check_references(&load(&dir), &dir, tolerance);
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
/// f32 on at least 99.5% and accuracy stays within half a point. On a CPU this runs whichever
/// bf16 path the server picks (AVX512-BF16, or emulation on the f32 kernels).
#[test]
fn bf16_keeps_the_f32_decisions_on_sst2_validation() {
    let device = common::test_device();
    let dir = common::minilm();
    let data = common::sst2_dev();
    let f32_labels =
        common::parity::sst2_labels(&common::load_model(&dir, &device, DType::F32), &data);
    let bf16 = common::load_model(&dir, &device, DType::BF16);
    let bf16_labels = common::parity::sst2_labels(&bf16, &data);
    let (a32, a16, agreement) =
        common::parity::check_agreement(&f32_labels, &bf16_labels, &data, 0.995, 0.005);
    eprintln!("SST-2 validation: f32 accuracy {a32:.4}, bf16 {a16:.4}, agreement {agreement:.4}");
}

/// DeBERTa-v3 (relative positions only) and ModernBERT (rotary) have no position table to
/// cap the input: tokenizer_config.json's model_max_length holds as declared, else
/// max_position_embeddings; and an input past max_position_embeddings still runs.
#[test]
fn models_without_a_position_table_take_the_declared_maximum() {
    for name in ["deberta-v2-tiny-3class", "modernbert-tiny-3class"] {
        let dir = common::more_fixture(name);
        let longer = common::model_copy(&dir, |d| {
            common::edit_json(&d.join("tokenizer_config.json"), |c| {
                c["model_max_length"] = 700.into()
            })
        });
        let m = load(longer.path());
        assert_eq!(m.tokenizer.max_length(), 700, "{name}");
        let e = m.tokenizer.encode(&"hello world ".repeat(1000)).unwrap();
        assert_eq!(e.len(), 700, "{name}");
        let logits = m
            .backend
            .forward(&[&e])
            .expect("forward past 512")
            .remove(0);
        assert!(logits.iter().all(|x| x.is_finite()), "{name}: {logits:?}");

        let undeclared = common::model_copy(&dir, |d| {
            common::edit_json(&d.join("tokenizer_config.json"), |c| {
                c.as_object_mut().unwrap().remove("model_max_length");
            })
        });
        assert_eq!(
            load(undeclared.path()).tokenizer.max_length(),
            512,
            "{name}"
        );
    }
    // ELECTRA has a table of 512 positions: a larger declared maximum is capped.
    let electra = common::model_copy(&common::more_fixture("electra-tiny-2class"), |d| {
        common::edit_json(&d.join("tokenizer_config.json"), |c| {
            c["model_max_length"] = 700.into()
        })
    });
    assert_eq!(load(electra.path()).tokenizer.max_length(), 512);
}

/// ModernBERT's `classifier_pooling: mean` averages the real tokens only: each text gives in a
/// batch padded to a longer one what it gives alone, and not what first-token pooling gives.
#[test]
fn modernbert_mean_pooling_ignores_the_padding() {
    let dir = common::more_fixture("modernbert-tiny-3class");
    let mean = common::model_copy(&dir, |d| {
        common::edit_json(&d.join("config.json"), |c| {
            c["classifier_pooling"] = "mean".into()
        })
    });
    let cls = load(&dir);
    let mean = load(mean.path());
    let texts = ["ok", "a fine film", &"long and winding ".repeat(30)];
    let encoded: Vec<_> = texts
        .iter()
        .map(|t| mean.tokenizer.encode(t).unwrap())
        .collect();
    let batch: Vec<_> = encoded.iter().collect();
    let together = mean.backend.forward(&batch).expect("batch");
    for (e, row) in encoded.iter().zip(&together) {
        let alone = mean.backend.forward(&[e]).expect("alone").remove(0);
        common::parity::assert_close("mean pooling, batch vs alone", row, &alone, 1e-5);
        let first = cls.backend.forward(&[e]).expect("cls").remove(0);
        assert!(
            first.iter().zip(&alone).any(|(a, b)| (a - b).abs() > 1e-3),
            "mean pooling changed nothing: {first:?} vs {alone:?}"
        );
    }
}
