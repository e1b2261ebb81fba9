//! Parity with the PyTorch references: shared by the device parity test and the per-path test.

use super::{references, TestModel};
use sentiment_server::batcher::Backend;
use sentiment_server::postprocess::scores;
use sentiment_server::tokenize::Encoded;

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tolerance,
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

/// Largest absolute difference between two logit rows.
fn max_difference(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

/// Token ids equal the references exactly; logits, scores and labels match one text at a
/// time and in batches of 7 that mix lengths (up to 512 tokens), within `tolerance`. Prints
/// the largest logit difference seen each way.
pub fn check_references(m: &TestModel, dir: &std::path::Path, tolerance: f32) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let refs = references(dir);
    assert!(refs.len() >= 50, "{name}: too few references");
    let function = m.config.score_function;
    let encoded: Vec<Encoded> = refs
        .iter()
        .map(|r| m.tokenizer.encode(&r.text).expect("encode"))
        .collect();
    for (r, e) in refs.iter().zip(&encoded) {
        assert_eq!(e.ids, r.input_ids, "{name}: token ids of {:?}", r.text);
    }
    let (mut single, mut batched) = (0f32, 0f32);
    for (r, e) in refs.iter().zip(&encoded) {
        let logits = m.backend.forward(&[e]).expect("forward").remove(0);
        single = single.max(max_difference(&logits, &r.logits));
        let what = format!("{name} single {:?}", r.text);
        assert_close(&what, &logits, &r.logits, tolerance);
        let s = scores(&logits, function, false);
        assert_close(&what, &s, &r.scores, tolerance);
        let best = s
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| m.config.labels[i].clone())
            .unwrap();
        assert_eq!(best, r.label, "{what}: label");
    }
    for (chunk_refs, chunk) in refs.chunks(7).zip(encoded.chunks(7)) {
        let lens: Vec<usize> = chunk.iter().map(|e| e.len()).collect();
        let batch: Vec<&Encoded> = chunk.iter().collect();
        let rows = m.backend.forward(&batch).expect("batch forward");
        for (r, row) in chunk_refs.iter().zip(&rows) {
            batched = batched.max(max_difference(row, &r.logits));
            let what = format!("{name} batch {lens:?} {:?}", r.text);
            assert_close(&what, row, &r.logits, tolerance);
            assert_close(&what, &scores(row, function, false), &r.scores, tolerance);
        }
    }
    eprintln!(
        "{name}: largest logit difference from PyTorch {single:.1e} one text at a time, {batched:.1e} in mixed batches"
    );
}

/// Top labels (1 = positive) of the 872 SST-2 validation sentences, in batches of 32.
pub fn sst2_labels(m: &TestModel, data: &[(usize, String)]) -> Vec<usize> {
    let encoded: Vec<Encoded> = data
        .iter()
        .map(|(_, text)| m.tokenizer.encode(text).expect("encode"))
        .collect();
    encoded
        .chunks(32)
        .flat_map(|chunk| {
            let refs: Vec<&Encoded> = chunk.iter().collect();
            m.backend.forward(&refs).expect("forward")
        })
        .map(|logits| usize::from(logits[1] > logits[0]))
        .collect()
}

/// A reduced-precision run keeps the f32 decisions on SST-2 validation: top-label agreement
/// at least `min_agreement`, accuracy within `max_accuracy_drop`; returns (f32 accuracy,
/// other accuracy, agreement).
pub fn check_agreement(
    f32_labels: &[usize],
    other: &[usize],
    data: &[(usize, String)],
    min_agreement: f64,
    max_accuracy_drop: f64,
) -> (f64, f64, f64) {
    let n = data.len() as f64;
    let accuracy = |labels: &[usize]| {
        labels
            .iter()
            .zip(data)
            .filter(|(p, (y, _))| *p == y)
            .count() as f64
            / n
    };
    let agreement = f32_labels.iter().zip(other).filter(|(a, b)| a == b).count() as f64 / n;
    let (a32, a) = (accuracy(f32_labels), accuracy(other));
    assert!(
        agreement >= min_agreement,
        "agreement with f32 {agreement:.4} < {min_agreement}"
    );
    assert!(
        (a32 - a).abs() <= max_accuracy_drop,
        "accuracy f32 {a32:.4} vs {a:.4}"
    );
    // The shared model's PyTorch fp32 accuracy.
    assert!((a32 - 0.8968).abs() < 0.002, "f32 accuracy {a32:.4}");
    (a32, a, agreement)
}

/// Largest differences of `m`'s logits and scores from the PyTorch fp32 references, one text
/// at a time and in batches of 7: (logits, scores).
pub fn reference_differences(m: &TestModel, dir: &std::path::Path) -> (f32, f32) {
    let refs = references(dir);
    let function = m.config.score_function;
    let encoded: Vec<Encoded> = refs
        .iter()
        .map(|r| m.tokenizer.encode(&r.text).expect("encode"))
        .collect();
    let (mut logits, mut scored) = (0f32, 0f32);
    let mut note = |row: &[f32], r: &super::Reference| {
        logits = logits.max(max_difference(row, &r.logits));
        scored = scored.max(max_difference(&scores(row, function, false), &r.scores));
    };
    for (r, e) in refs.iter().zip(&encoded) {
        note(&m.backend.forward(&[e]).expect("forward").remove(0), r);
    }
    for (chunk_refs, chunk) in refs.chunks(7).zip(encoded.chunks(7)) {
        let batch: Vec<&Encoded> = chunk.iter().collect();
        for (r, row) in chunk_refs
            .iter()
            .zip(m.backend.forward(&batch).expect("forward"))
        {
            note(&row, r);
        }
    }
    (logits, scored)
}
