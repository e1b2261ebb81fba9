//! Criterion micro-benchmarks of the data path's stages, on minilm-sst2 and SST-2 sentences:
//! tokenization, batch formation (length-sorted split, gathering), the forward pass by batch
//! size and sequence length on every CPU path this machine runs, and the packed matrix kernels
//! alone on the model's layer shapes against the `gemm` crate (rates in FLOP/s, to compare with
//! the CPU's peak), and one head's attention by sequence length, blocked (`Isa::attend`)
//! against two packed products (`attend_by_products`).
//!
//!   cargo bench --bench micro                        # all
//!   cargo bench --bench micro -- forward/avx2-f32    # a group or case (criterion filter)
//!   cargo bench --bench micro --no-default-features -- matmul/gemm   # gemm's AVX2 kernels
//! SHARED_DIR points at the shared models (default ../shared).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sentiment_server::batcher::{split_sizes, BatchLimits};
use sentiment_server::checkpoint::ModelFiles;
use sentiment_server::model::cpu::{
    attend_by_products, Act, AmxBf16, AmxInt8, Avx512Bf16, Avx512Vnni, Isa, Level, PackedMatrix,
    WeightFormat, LANES, QUERY_BLOCK,
};
use sentiment_server::model::{self, Batch, Compute};
use sentiment_server::tokenize::TextTokenizer;
use sentiment_server::types::Encoded;
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
    group.bench_function("gather_32", |b| {
        b.iter(|| {
            let mut input = Batch::default();
            for e in black_box(&batch) {
                input.push(&e.ids, &e.type_ids);
            }
            input
        })
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

/// The int8 kernels this machine runs: AVX512-VNNI, and `vpmaddubsw` at avx512 and avx2.
fn int8_kernels() -> Vec<(String, Isa, WeightFormat)> {
    let mut kernels = Vec::new();
    if let Some(token) = AmxInt8::detect() {
        let isa = Isa::Avx512(token.vnni().avx512());
        kernels.push(("amx-int8".into(), isa, WeightFormat::Int8Amx(token)));
    }
    if let Some(token) = Avx512Vnni::detect() {
        let isa = Isa::Avx512(token.avx512());
        kernels.push((
            "avx512-vnni-int8".into(),
            isa,
            WeightFormat::Int8Vnni(token),
        ));
    }
    for level in [Level::Avx512, Level::Avx2] {
        if let Ok(isa) = Isa::detect(level) {
            kernels.push((format!("{level}-int8"), isa, WeightFormat::Int8));
        }
    }
    kernels
}

/// Every CPU path this machine runs, f32, plus bf16 where AVX512-BF16 exists and the int8
/// kernels.
fn paths() -> Vec<(String, Compute)> {
    let mut paths = Vec::new();
    for level in Level::ALL {
        if let Ok(isa) = Isa::detect(level) {
            paths.push((
                format!("{level}-f32"),
                Compute::Host {
                    isa,
                    weights: WeightFormat::F32,
                },
            ));
        }
    }
    for (name, isa, weights) in int8_kernels() {
        paths.push((name, Compute::Host { isa, weights }));
    }
    if let Some(token) = AmxBf16::detect() {
        paths.push((
            "amx-bf16".into(),
            Compute::Host {
                isa: Isa::Avx512(token.bf16().avx512()),
                weights: WeightFormat::Bf16Amx(token),
            },
        ));
    }
    if let Some(token) = Avx512Bf16::detect() {
        paths.push((
            "avx512-bf16".into(),
            Compute::Host {
                isa: Isa::Avx512(token.avx512()),
                weights: WeightFormat::Bf16(token),
            },
        ));
    }
    paths.push((
        "candle-f32".into(),
        Compute::candle(candle_core::Device::Cpu, candle_core::DType::F32),
    ));
    paths
}

fn forward(c: &mut Criterion) {
    init();
    let tokenizer = tokenizer();
    for (name, compute) in paths() {
        let files = ModelFiles::locate(&shared().join("models/minilm-sst2")).expect("model files");
        let config = files.read_config().expect("config");
        let loaded = model::load(files, config, &compute).expect("model");
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for (batch, len) in [(1, 16), (1, 32), (8, 32), (32, 32), (32, 128)] {
            let sequences = synthetic(&tokenizer, batch, len);
            let mut input = Batch::default();
            for e in &sequences {
                input.push(&e.ids, &e.type_ids);
            }
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
        group.finish();
    }
}

/// The model's four layer shapes (hidden 384, intermediate 1536) for 25 rows (one sentence of
/// SST-2's average length) and 800 (32 of them): this crate's packed kernels at every level
/// this CPU runs, against the `gemm` crate (what candle calls, packing the weights on every
/// call; its own dispatch picks its kernels: AVX-512 when built with the default
/// `gemm-avx512` feature, AVX2 with `--no-default-features`). Criterion's elements are FLOPs
/// (int8: integer multiply-adds counted as two operations, quantizing the inputs included),
/// so its "elem/s" is the FLOP (OP) rate.
fn matmul(c: &mut Criterion) {
    let shapes = [
        ("qkv", 1152, 384, None),
        ("attn_out", 384, 384, None),
        ("ffn_in_gelu", 1536, 384, Some(Act::Gelu)),
        ("ffn_out", 384, 1536, None),
    ];
    let mut kernels: Vec<(String, Option<(Isa, WeightFormat)>)> = Level::ALL
        .into_iter()
        .filter_map(|l| Isa::detect(l).ok())
        .map(|isa| (format!("{isa}-f32"), Some((isa, WeightFormat::F32))))
        .collect();
    if let Some(token) = AmxBf16::detect() {
        kernels.push((
            "amx-bf16".into(),
            Some((
                Isa::Avx512(token.bf16().avx512()),
                WeightFormat::Bf16Amx(token),
            )),
        ));
    }
    if let Some(token) = Avx512Bf16::detect() {
        kernels.push((
            "avx512-bf16".into(),
            Some((Isa::Avx512(token.avx512()), WeightFormat::Bf16(token))),
        ));
    }
    for (name, isa, format) in int8_kernels() {
        kernels.push((name, Some((isa, format))));
    }
    kernels.push(("gemm-crate-f32".into(), None));
    for rows in [25, 800] {
        for (name, kernel) in &kernels {
            let mut group = c.benchmark_group(format!("matmul/{name}/rows{rows}"));
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(2))
                .warm_up_time(Duration::from_millis(500));
            for (shape, n, k, act) in shapes {
                // Mostly small with a few large, as trained weights are (seventh powers of
                // values spread over [-1, 1], scattered): the int8 `vpmaddubsw` kernels
                // take two steps on these as on minilm-sst2's.
                let weight: Vec<f32> = (0..n * k)
                    .map(|i: usize| {
                        let v = (i.wrapping_mul(2_654_435_761) % 97) as f32 / 48.0 - 1.0;
                        v.powi(7) / 10.0
                    })
                    .collect();
                let x: Vec<f32> = (0..rows * k)
                    .map(|i| ((i % 89) as f32 - 44.0) / 440.0)
                    .collect();
                group.throughput(Throughput::Elements((2 * rows * n * k) as u64));
                let id = format!("{shape}_{n}x{k}");
                match kernel {
                    Some((isa, format)) => {
                        let packed = PackedMatrix::pack(&weight, n, k, vec![0.0; n], *isa, *format)
                            .expect("pack");
                        group.bench_function(id, |b| {
                            b.iter(|| packed.matmul(black_box(&x), rows, act))
                        });
                    }
                    None => {
                        let mut out = vec![0f32; rows * n];
                        let threads = if rows * n * k < 1 << 18 {
                            gemm::Parallelism::None
                        } else {
                            gemm::Parallelism::Rayon(rayon::current_num_threads())
                        };
                        group.bench_function(id, |b| {
                            b.iter(|| gemm_product(&x, &weight, rows, n, k, &mut out, threads))
                        });
                    }
                }
            }
            group.finish();
        }
    }
}

/// One head of minilm-sst2's shape (32 dimensions of fused QKV rows 3 x 384 wide) over a
/// sequence of `len` tokens, every token a query: the blocked kernel (keys transposed first,
/// as the encoder does) against the two packed products; FLOPs are the scores' and the
/// weighted sums' multiply-adds, two each.
fn attention(c: &mut Criterion) {
    let (hd, stride) = (32, 3 * 384);
    for isa in Level::ALL.into_iter().filter_map(|l| Isa::detect(l).ok()) {
        let mut group = c.benchmark_group(format!("attention/{isa}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for len in [64usize, 228, 512] {
            let qkv: Vec<f32> = (0..len * stride)
                .map(|i| ((i.wrapping_mul(2_654_435_761) % 89) as f32 - 44.0) / 44.0)
                .collect();
            let (q, k, v) = (&qkv[..], &qkv[384..], &qkv[768..]);
            group.throughput(Throughput::Elements((4 * len * len * hd) as u64));
            group.bench_function(format!("blocked/len{len}"), |b| {
                b.iter(|| {
                    let padded = len.next_multiple_of(LANES);
                    let mut kt = vec![0f32; hd * padded];
                    for t in 0..len {
                        for d in 0..hd {
                            kt[d * padded + t] = k[t * stride + d];
                        }
                    }
                    let mut scratch = vec![0f32; QUERY_BLOCK * (padded + hd)];
                    let mut out = vec![0f32; len * hd];
                    isa.attend(q, stride, &kt, padded, v, len, 0.17, &mut scratch, &mut out);
                    out
                })
            });
            group.bench_function(format!("products/len{len}"), |b| {
                b.iter(|| {
                    let mut out = vec![0f32; len * hd];
                    attend_by_products(isa, q, k, v, stride, len, hd, 0.17, &mut out);
                    out
                })
            });
        }
        group.finish();
    }
}

/// `out = x W^T` through `gemm::gemm`, as candle calls it (W row-major `[n, k]`).
fn gemm_product(
    x: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
    out: &mut [f32],
    threads: gemm::Parallelism,
) {
    assert!(x.len() == m * k && w.len() == n * k && out.len() == m * n);
    // SAFETY: the asserts above bound every index gemm derives from these sizes and strides:
    // dst m x n row-major (column stride 1, row stride n), lhs m x k row-major, rhs k x n read
    // from W's rows (rhs[kk][j] = w[j * k + kk]: column stride k, row stride 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            threads,
        )
    }
}

/// The CPU's int8 and f32 peaks, measured: 16 independent accumulator chains of `vpdpbusd`
/// (AVX512-VNNI, 512-bit), of `vpmaddubsw` + `vpmaddwd` + `vpaddd` (256-bit, the avx2
/// kernel's step: four products per lane), of `vpmaddwd` + `vpaddd` alone and of
/// 256-bit FMA, in registers, one chain per thread of rayon's pool. Elements are operations
/// (a multiply-add is two), so "elem/s" is the peak the kernels' rates compare with.
#[cfg(target_arch = "x86_64")]
fn peak(c: &mut Criterion) {
    use rayon::prelude::*;
    use std::arch::x86_64::*;
    const STEPS: usize = 1 << 16;
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn vnni(seed: i32) -> i32 {
        let (a, b) = (_mm512_set1_epi32(seed), _mm512_set1_epi32(seed ^ 0x0101));
        let mut acc = [_mm512_setzero_si512(); 16];
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                *v = _mm512_dpbusd_epi32(*v, a, b);
            }
        }
        acc.iter().fold(0, |s, v| s ^ _mm512_reduce_add_epi32(*v))
    }
    #[target_feature(enable = "avx2")]
    fn madd(seed: i32) -> i32 {
        let b = _mm256_set1_epi32(seed ^ 0x0101);
        let mut acc = [_mm256_set1_epi32(seed); 16];
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                // The product reads the accumulator, so it cannot be hoisted out of the loop.
                *v = _mm256_add_epi32(*v, _mm256_madd_epi16(*v, b));
            }
        }
        acc.iter().fold(0, |s, v| s ^ _mm256_extract_epi32::<0>(*v))
    }
    #[target_feature(enable = "avx2")]
    fn maddubs(seed: i32) -> i32 {
        let (b, ones) = (_mm256_set1_epi32(seed ^ 0x0101), _mm256_set1_epi16(1));
        let mut acc = [_mm256_set1_epi32(seed); 16];
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                let pairs = _mm256_maddubs_epi16(*v, b);
                *v = _mm256_add_epi32(*v, _mm256_madd_epi16(pairs, ones));
            }
        }
        acc.iter().fold(0, |s, v| s ^ _mm256_extract_epi32::<0>(*v))
    }
    #[target_feature(enable = "avx2,fma")]
    fn fma(seed: i32) -> i32 {
        let (a, b) = (_mm256_set1_ps(seed as f32), _mm256_set1_ps(0.5));
        let mut acc = [_mm256_setzero_ps(); 16];
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(a, b, *v);
            }
        }
        acc.iter().fold(0, |s, v| s ^ _mm256_cvtss_f32(*v) as i32)
    }
    type Kernel = fn(i32) -> i32;
    // Operations per call: 16 chains x STEPS x (lanes x multiply-adds per lane x 2).
    let mut kernels: Vec<(&str, Kernel, usize)> = Vec::new();
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
    {
        // SAFETY: the features `vnni` is compiled for were detected just above.
        kernels.push(("int8_vpdpbusd_512", |s| unsafe { vnni(s) }, 16 * 4 * 2));
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: as above, for AVX2 (and FMA).
        kernels.push(("int8_vpmaddubsw_256", |s| unsafe { maddubs(s) }, 8 * 4 * 2));
        // SAFETY: as above.
        kernels.push(("int8_vpmaddwd_256", |s| unsafe { madd(s) }, 8 * 2 * 2));
        // SAFETY: as above.
        kernels.push(("f32_fma_256", |s| unsafe { fma(s) }, 8 * 2));
    }
    let threads = rayon::current_num_threads();
    let mut group = c.benchmark_group("peak");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for (name, kernel, per_step) in kernels {
        group.throughput(Throughput::Elements(
            (16 * STEPS * per_step * threads) as u64,
        ));
        group.bench_function(format!("{name}_{threads}threads"), |b| {
            b.iter(|| {
                (0..threads)
                    .into_par_iter()
                    .map(|t| kernel(black_box(t as i32 + 1)))
                    .sum::<i32>()
            })
        });
    }
    group.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn peak(_: &mut Criterion) {}

criterion_group!(
    benches,
    tokenization,
    batch_formation,
    forward,
    matmul,
    attention,
    peak
);
criterion_main!(benches);
