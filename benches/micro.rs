//! Criterion micro-benchmarks of the data path's stages, on minilm-sst2 and SST-2 sentences:
//! tokenization, batch formation (length-sorted split, padding) and the forward pass by batch
//! size and sequence length, in f32 and bf16, and the packed matrix kernel alone on the model's
//! layer shapes (its rate in FLOP/s, to compare with the CPU's peak).
//!
//!   cargo bench --bench micro                      # all
//!   cargo bench --bench micro -- forward/f32       # a group or case (criterion filter)
//! SHARED_DIR points at the shared models (default ../shared).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sentiment_server::batcher::{split_sizes, BatchLimits};
use sentiment_server::model::{self, BatchInput, ModelFiles};
use sentiment_server::tokenize::{Encoded, TextTokenizer};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// As the server does: candle's element-wise pool spin-waits (see BENCHMARKS.md).
fn init() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn shared() -> PathBuf {
    std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn sentences() -> Vec<String> {
    let path = shared().join("data/sst2_dev.tsv");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, t)| t.to_string()))
        .collect()
}

fn tokenizer() -> TextTokenizer {
    let files = ModelFiles::locate(&shared().join("models/minilm-sst2")).expect("model files");
    let config = files.read_config().expect("config");
    TextTokenizer::load(&files, &config).expect("tokenizer")
}

fn tokenization(c: &mut Criterion) {
    init();
    let tokenizer = tokenizer();
    let texts = sentences();
    let mut group = c.benchmark_group("tokenize");
    let median = {
        let mut by_len: Vec<&String> = texts.iter().collect();
        by_len.sort_by_key(|t| t.len());
        by_len[by_len.len() / 2].clone()
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("median_sentence", |b| {
        b.iter(|| tokenizer.encode(black_box(&median)))
    });
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("sst2_dev_872", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| tokenizer.encode(t).map_or(0, |e| e.len()))
                .sum::<usize>()
        })
    });
    group.finish();
}

fn batch_formation(c: &mut Criterion) {
    init();
    let tokenizer = tokenizer();
    let encoded: Vec<Encoded> = sentences()
        .iter()
        .map(|t| tokenizer.encode(t).expect("encode"))
        .collect();
    let limits = BatchLimits {
        max_batch_size: 32,
        max_batch_tokens: 16384,
        max_batch_delay: Duration::ZERO,
        max_queue_size: 1024,
        max_queue_wait: Duration::ZERO,
    };
    let mut group = c.benchmark_group("batch");
    for pool in [32, 128, 872] {
        let mut lens: Vec<usize> = encoded.iter().take(pool).map(Encoded::len).collect();
        lens.sort_unstable();
        group.throughput(Throughput::Elements(pool as u64));
        group.bench_with_input(BenchmarkId::new("split", pool), &lens, |b, lens| {
            b.iter(|| split_sizes(black_box(lens), &limits))
        });
    }
    let batch: Vec<&Encoded> = encoded.iter().take(32).collect();
    group.throughput(Throughput::Elements(32));
    group.bench_function("pad_32", |b| {
        b.iter(|| BatchInput::pad(black_box(&batch), 0))
    });
    group.finish();
}

/// `n` sequences of exactly `len` tokens ([CLS] ... [SEP]) cut from real sentences.
fn synthetic(tokenizer: &TextTokenizer, n: usize, len: usize) -> Vec<Encoded> {
    let words: Vec<u32> = sentences()
        .iter()
        .flat_map(|t| tokenizer.encode(t).expect("encode").ids[1..].to_vec())
        .filter(|&id| id != 102)
        .collect();
    (0..n)
        .map(|i| {
            let mut ids = vec![101];
            ids.extend(words.iter().cycle().skip(i * 7).take(len - 2));
            ids.push(102);
            Encoded {
                type_ids: vec![0; ids.len()],
                ids,
                truncated: false,
            }
        })
        .collect()
}

fn forward(c: &mut Criterion) {
    init();
    let tokenizer = tokenizer();
    for (name, dtype) in [
        ("f32", candle_core::DType::F32),
        ("bf16", candle_core::DType::BF16),
    ] {
        let files = ModelFiles::locate(&shared().join("models/minilm-sst2")).expect("model files");
        let loaded = model::load(files, &candle_core::Device::Cpu, dtype).expect("model");
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        for batch in [1, 8, 32] {
            for len in [16, 32, 64, 128] {
                let sequences = synthetic(&tokenizer, batch, len);
                let refs: Vec<&Encoded> = sequences.iter().collect();
                let input = BatchInput::pad(&refs, loaded.config.pad_token_id);
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("batch{batch}"), format!("len{len}")),
                    &input,
                    |b, input| {
                        b.iter(|| {
                            loaded
                                .classifier
                                .forward(black_box(input))
                                .expect("forward")
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

/// The packed kernel alone on minilm-sst2's four layer shapes (hidden 384, intermediate 1536)
/// for 800 rows (32 sentences of SST-2's average 25 tokens); criterion's elements are FLOPs,
/// so its "elem/s" is the kernel's FLOP rate.
fn matmul(c: &mut Criterion) {
    use sentiment_server::model::kernels::{Epilogue, PackKind, PackedMatrix};
    let rows = 800;
    let shapes = [
        ("qkv", 1152, 384, Epilogue::None),
        ("attn_out", 384, 384, Epilogue::None),
        ("ffn_in_gelu", 1536, 384, Epilogue::Gelu),
        ("ffn_out", 384, 1536, Epilogue::None),
    ];
    for (name, kind) in [("f32", PackKind::F32), ("bf16", PackKind::Bf16)] {
        if !PackKind::available(kind) {
            continue;
        }
        let mut group = c.benchmark_group(format!("matmul/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for (shape, n, k, epilogue) in shapes {
            let weight: Vec<f32> = (0..n * k)
                .map(|i| ((i % 97) as f32 - 48.0) / 480.0)
                .collect();
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i % 89) as f32 - 44.0) / 440.0)
                .collect();
            let packed = PackedMatrix::pack(&weight, n, k, vec![0.0; n], kind);
            group.throughput(Throughput::Elements((2 * rows * n * k) as u64));
            group.bench_function(format!("{shape}_{rows}x{n}x{k}"), |b| {
                b.iter(|| packed.matmul(black_box(&x), rows, epilogue))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, tokenization, batch_formation, forward, matmul);
criterion_main!(benches);
