//! Reranking at every compute path: the cross-encoder fixture's (query, document) pairs, one
//! query's documents in one batch and each alone, against transformers' logits and sigmoid
//! scores (1e-4 in f32) and its order (exact); int8 within [`RERANK_INT8_SCORE_TOLERANCE`], the
//! best document transformers'.

use super::harness::{trial, vnni_int8};
use super::Path;
use libtest_mimic::Trial;
use sentiment_server::model::cpu::{Isa, Level, WeightFormat};
use sentiment_server::model::Compute;
use sentiment_server::postprocess::scores;
use sentiment_server::types::{Backend, Encoded, ScoreFunction, TextInput, Truncation};

#[derive(serde::Deserialize)]
struct RerankReference {
    query: String,
    documents: Vec<String>,
    logits: Vec<f32>,
    scores: Vec<f32>,
    order: Vec<usize>,
}

fn references(dir: &std::path::Path) -> Vec<RerankReference> {
    let text = std::fs::read_to_string(dir.join("reference.jsonl")).expect("references");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect()
}

/// Indices best first, equal logits in input order (as the server ranks).
fn order(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
}

/// Every reference query on `compute`: scores (and, when `exact_order`, logits) within
/// `tolerance`, the order exact when `exact_order`, else the best document the same; each
/// document alone gives what it gave in the batch. Returns the largest score difference.
fn check(compute: Compute, tolerance: f32, exact_order: bool) -> f32 {
    let dir = super::common::more_fixture("bert-tiny-reranker");
    let m = super::common::load_model_with(&dir, &compute);
    assert_eq!(m.config.labels.len(), 1, "a cross-encoder has one output");
    let refs = references(&dir);
    assert!(refs.len() >= 4, "too few rerank references");
    let mut largest = 0f32;
    for r in &refs {
        let inputs: Vec<TextInput> = (r.documents.iter())
            .map(|d| TextInput::pair(r.query.as_str(), d.as_str()))
            .collect();
        let encoded =
            (m.tokenizer.encode_inputs(&inputs, Truncation::LongestFirst)).expect("encode");
        let batch: Vec<&Encoded> = encoded.iter().collect();
        let rows = m.backend.forward(&batch).expect("forward");
        let logits: Vec<f32> = rows.iter().map(|row| row[0]).collect();
        let what = format!("{compute}, query {:?}", r.query);
        for (i, (got, want)) in logits.iter().zip(&r.logits).enumerate() {
            let score = scores(&[*got], ScoreFunction::Sigmoid, false)[0];
            largest = largest.max((score - r.scores[i]).abs());
            assert!(
                (score - r.scores[i]).abs() <= tolerance,
                "{what}: document {i} score {score} vs {}",
                r.scores[i]
            );
            if exact_order {
                assert!(
                    (got - want).abs() <= tolerance,
                    "{what}: {logits:?} vs {:?}",
                    r.logits
                );
            }
            let alone = m.backend.forward(&[&encoded[i]]).expect("forward")[0][0];
            assert!(
                (alone - got).abs() <= 1e-5 * (1.0 + got.abs()),
                "{what}: {alone} vs {got}"
            );
        }
        let got = order(&logits);
        if exact_order {
            assert_eq!(got, r.order, "{what}: order");
        } else {
            assert_eq!(
                got[0], r.order[0],
                "{what}: best document ({got:?} vs {:?})",
                r.order
            );
        }
    }
    largest
}

/// The largest difference of an int8 rerank score from PyTorch's fp32 one. Measured on the
/// fixture (random weights drawn with `initializer_range` 0.5, 25 times BERT's, so activations
/// far wider than a trained model's): 0.19 with 8-bit activation codes (VNNI, plain loops),
/// 0.11 with the 7-bit `vpmaddubsw` kernels; above the classifiers' 0.15 for 8-bit codes
/// ([`super::INT8_SCORE_TOLERANCE`]). The order may move among close documents; the best
/// document stays transformers' at every level.
const RERANK_INT8_SCORE_TOLERANCE: f32 = 0.25;

fn host((isa, weights): (Isa, WeightFormat)) -> Compute {
    Compute::Host { isa, weights }
}

/// `rerank::<path>` for candle's ops and each kernel level in f32; `rerank::int8::<level>`
/// (and VNNI) in int8.
pub fn trials() -> Vec<Trial> {
    let mut trials: Vec<Trial> = Path::all()
        .into_iter()
        .map(|path| {
            trial(format!("rerank::{}", path.name()), path.compute(), |c| {
                check(c, 1e-4, true);
            })
        })
        .collect();
    let int8 = |compute: Compute| {
        let largest = check(compute.clone(), RERANK_INT8_SCORE_TOLERANCE, false);
        eprintln!("{compute}: rerank scores within {largest:.4} of PyTorch fp32");
    };
    trials.push(trial(
        "rerank::int8::avx512-vnni".into(),
        vnni_int8().map(host),
        int8,
    ));
    for level in Level::ALL {
        let compute = Isa::detect(level).map(|isa| Compute::Host {
            isa,
            weights: WeightFormat::Int8,
        });
        trials.push(trial(
            format!("rerank::int8::{}", level.name()),
            compute,
            int8,
        ));
    }
    trials
}
