//! ModernBERT attending a few query rows at a time gives what one block gives, and what
//! PyTorch gives: the shared fixture `more-fixtures/modernbert-tiny-3class` (window 16, so 8 on
//! each side; a global layer every 3) with blocks of 5, 8 and 16 rows puts several blocks, and
//! windows across their edges, into its texts (up to 512 tokens), alone and in mixed batches.

use super::super::batch::Batch;
use super::CandleClassifier;
use crate::checkpoint::ModelFiles;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    let shared = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("more-fixtures/modernbert-tiny-3class")
}

fn load(rows: usize) -> CandleClassifier {
    let files = ModelFiles::locate(&fixture()).expect("the shared fixture (set SHARED_DIR)");
    let config = files.read_config().expect("config");
    let tensors = files.open_weights().expect("weights");
    let vb = VarBuilder::from_backend(Box::new(tensors), DType::F32, Device::Cpu);
    CandleClassifier::load(&vb, &config)
        .expect("load")
        .with_query_block(rows)
}

/// `(input_ids, logits)` of each reference text.
fn references() -> Vec<(Vec<u32>, Vec<f32>)> {
    let text = std::fs::read_to_string(fixture().join("reference.jsonl")).expect("references");
    text.lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).expect("json");
            let numbers = |key: &str| -> Vec<f64> {
                r[key]
                    .as_array()
                    .expect(key)
                    .iter()
                    .map(|v| v.as_f64().expect("a number"))
                    .collect()
            };
            let ids = numbers("input_ids").into_iter().map(|v| v as u32);
            let logits = numbers("logits").into_iter().map(|v| v as f32);
            (ids.collect(), logits.collect())
        })
        .collect()
}

fn forward(model: &CandleClassifier, texts: &[&Vec<u32>]) -> Vec<Vec<f32>> {
    let mut batch = Batch::default();
    for ids in texts {
        batch.push(ids, &[]);
    }
    model.forward(&batch).expect("forward")
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max);
    assert!(
        got.len() == want.len() && worst <= tolerance,
        "{what}: got {got:?}, want {want:?}"
    );
}

#[test]
fn small_query_blocks_match_one_block_and_the_pytorch_references() {
    let refs = references();
    let longest = refs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    assert!(
        refs.len() >= 50 && longest >= 500,
        "fixture: {longest} tokens"
    );
    let whole = load(usize::MAX);
    for rows in [5, 8, 16] {
        let blocked = load(rows);
        for (ids, want) in &refs {
            let what = format!("{rows}-row blocks, {} tokens", ids.len());
            let got = forward(&blocked, &[ids]).remove(0);
            assert_close(&what, &got, want, 1e-4);
            assert_close(&what, &got, &forward(&whole, &[ids])[0], 1e-5);
        }
        // Mixed lengths: padding queries and keys inside and past the blocks.
        for chunk in refs.chunks(7) {
            let texts: Vec<&Vec<u32>> = chunk.iter().map(|(ids, _)| ids).collect();
            let one_block = forward(&whole, &texts);
            for ((got, (_, want)), one) in
                forward(&blocked, &texts).iter().zip(chunk).zip(&one_block)
            {
                let what = format!("{rows}-row blocks in a batch");
                assert_close(&what, got, want, 1e-4);
                assert_close(&what, got, one, 1e-5);
            }
        }
    }
}
