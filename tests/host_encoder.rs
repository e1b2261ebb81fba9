//! The host encoder (plain f32 rows, no padding; used on CPUs with AVX-512) against the same
//! model run through candle's ops, on what the PyTorch references do not cover: long inputs
//! (attention over more than 64 keys, up to the 512-token maximum) batched with short ones.
//! Alone in its test binary because it switches paths through an environment variable.

mod common;

use candle_core::DType;
use sentiment_server::batcher::Backend;
use sentiment_server::model::{kernels::PackKind, ModelBackend};
use sentiment_server::tokenize::{Encoded, TextTokenizer};

fn backend(dir: &std::path::Path, candle_ops: bool) -> (ModelBackend, TextTokenizer) {
    if candle_ops {
        std::env::set_var("SENTIMENT_CPU_KERNELS", "packed");
    }
    let m = common::load_model(dir, &candle_core::Device::Cpu, DType::F32);
    std::env::remove_var("SENTIMENT_CPU_KERNELS");
    let want = if candle_ops {
        "candle ops, packed kernels"
    } else {
        "host encoder, AVX-512 f32 kernels"
    };
    assert_eq!(m.backend.classifier.compute(), want);
    (m.backend, m.tokenizer)
}

#[test]
fn host_encoder_matches_candle_ops_on_long_and_mixed_batches() {
    if !PackKind::available(PackKind::F32) {
        eprintln!("skipped: no AVX-512 here, so no host encoder");
        return;
    }
    let sentences: Vec<String> = common::sst2_dev().into_iter().map(|(_, t)| t).collect();
    let mut models = vec![common::minilm()];
    models.extend(common::reference_models());
    for dir in models {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (host, tokenizer) = backend(&dir, false);
        let (reference, _) = backend(&dir, true);
        // 1 to 512 tokens: one word, sentences, and runs of sentences up to truncation.
        let texts: Vec<String> = [1, 3, 9, 40, 200]
            .iter()
            .map(|&n| sentences[..n].join(" "))
            .chain(["ok".to_string()])
            .collect();
        let encoded: Vec<Encoded> = texts.iter().map(|t| tokenizer.encode(t).unwrap()).collect();
        let lengths: Vec<usize> = encoded.iter().map(|e| e.len()).collect();
        assert!(
            lengths.iter().any(|&l| l > 128) && lengths.iter().any(|&l| l <= 5),
            "{name}: {lengths:?}"
        );
        let refs: Vec<&Encoded> = encoded.iter().collect();
        let got = host.forward(&refs).expect("host forward");
        let want = reference.forward(&refs).expect("candle forward");
        for ((g, w), len) in got.iter().zip(&want).zip(&lengths) {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{name}, {len} tokens: {g:?} vs {w:?}"
                );
            }
        }
        // Alone, each sequence gives what it gave in the batch (no padding leaks in).
        for (e, g) in encoded.iter().zip(&got) {
            let alone = host.forward(&[e]).expect("forward").remove(0);
            for (a, b) in alone.iter().zip(g) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{name}: {alone:?} vs {g:?}"
                );
            }
        }
    }
}
