//! Forward passes of the 872 SST-2 validation sentences in batches of 32 (length-sorted, as the
//! batcher forms them; tokenization excluded) on each CPU path given, timed in CPU seconds of
//! the process as well as wall seconds: on a shared machine the CPU time is what a pass costs
//! (wall time counts other work's turns too). Run with RAYON_NUM_THREADS=1 for the single-core
//! cost; sentences per CPU second times the cores is then the no-HTTP ceiling.
//!
//!   cargo run --release --example cpu_time -- avx2-f32 avx2-int8 avx512-f32 avx512-vnni-int8
//!   cargo run --release --example cpu_time -- avx512-bf16 amx-bf16 amx-int8   # where they exist
//! SHARED_DIR points at the shared models (default ../shared); TEXTS at another `label<TAB>text`
//! file (e.g. the long reviews of `benches/data/reviews.py`), MODEL at another model directory,
//! BATCH at another batch size (default 32). Then each path's decisions: accuracy against the
//! file's labels, and agreement with the first path's.

use sentiment_server::checkpoint::ModelFiles;
use sentiment_server::model::cpu::{
    AmxBf16, AmxInt8, Avx512Bf16, Avx512Vnni, Isa, Level, WeightFormat,
};
use sentiment_server::model::{self, Batch, Compute};
use sentiment_server::tokenize::TextTokenizer;
use std::path::PathBuf;
use std::time::Instant;

/// User + system CPU seconds of this process, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks: f64 = fields
        .get(11..13)
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn compute(name: &str) -> Compute {
    let (level, dtype) = name.split_once('-').expect("LEVEL-DTYPE");
    // The paths beyond a level's own: VNNI, AVX512-BF16 and AMX's tiles.
    let special = match name {
        "avx512-vnni-int8" => Avx512Vnni::detect().map(WeightFormat::Int8Vnni),
        "avx512-bf16" => Avx512Bf16::detect().map(WeightFormat::Bf16),
        "amx-int8" => AmxInt8::detect().map(WeightFormat::Int8Amx),
        "amx-bf16" => AmxBf16::detect().map(WeightFormat::Bf16Amx),
        _ => None,
    };
    if let Some(weights) = special {
        let isa = Isa::detect(Level::Avx512).expect("AVX-512");
        return Compute::Host { isa, weights };
    }
    let level = Level::ALL
        .into_iter()
        .find(|l| l.name() == level)
        .expect("a level");
    let isa = Isa::detect(level).expect("a level this CPU runs");
    let weights = match dtype {
        "int8" => WeightFormat::Int8,
        _ => WeightFormat::F32,
    };
    Compute::Host { isa, weights }
}

fn main() {
    let shared = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let dir = std::env::var_os("MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("models/minilm-sst2"));
    let data = std::env::var_os("TEXTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("data/sst2_dev.tsv"));
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let rows: Vec<(Option<usize>, String)> = std::fs::read_to_string(&data)
        .expect("the texts (TEXTS)")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(label, t)| (label.parse().ok(), t.to_string()))
        .filter(|(label, _)| label.is_some())
        .collect();
    let texts: Vec<&String> = rows.iter().map(|(_, t)| t).collect();
    let files = ModelFiles::locate(&dir).expect("model files");
    let config = files.read_config().expect("config");
    let tokenizer = TextTokenizer::load(&files, &config).expect("tokenizer");
    let mut encoded: Vec<_> = rows
        .iter()
        .map(|(label, t)| (label, tokenizer.encode(t).expect("encode")))
        .collect();
    encoded.sort_by_key(|(_, e)| e.len());
    let labels: Vec<usize> = encoded.iter().filter_map(|(l, _)| **l).collect();
    let batches: Vec<Batch> = encoded
        .chunks(batch)
        .map(|chunk| {
            let mut b = Batch::default();
            for (_, e) in chunk {
                b.push(&e.ids, &e.type_ids);
            }
            b
        })
        .collect();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let names: Vec<String> = std::env::args().skip(1).collect();
    let models: Vec<_> = names
        .iter()
        .map(|n| {
            let files = ModelFiles::locate(&dir).expect("model files");
            let config = files.read_config().expect("config");
            model::load(files, config, &compute(n)).expect("load")
        })
        .collect();
    // Rounds alternate the paths, so that a busy spell of the machine falls on all of them.
    let mut best = vec![(f64::MAX, f64::MAX); names.len()];
    for _ in 0..rounds {
        for (i, m) in models.iter().enumerate() {
            let (cpu, wall) = (cpu_seconds(), Instant::now());
            for b in &batches {
                m.classifier.forward(b).expect("forward");
            }
            let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
            best[i] = (best[i].0.min(cpu), best[i].1.min(wall));
            eprintln!("{:18} {cpu:.2} CPU s, {wall:.2} wall s", names[i]);
        }
    }
    let tokens: usize = batches.iter().map(|b| b.ids.len()).sum();
    println!(
        "{} texts, {tokens} tokens (mean {:.0}), batches of {batch}",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );
    // Each path's decisions: accuracy against the file's labels, agreement with the first path.
    let decisions: Vec<Vec<usize>> = models
        .iter()
        .map(|m| {
            let logits = batches
                .iter()
                .flat_map(|b| m.classifier.forward(b).expect("forward"));
            logits
                .map(|l| (0..l.len()).fold(0, |best, i| if l[i] > l[best] { i } else { best }))
                .collect()
        })
        .collect();
    let share = |a: &[usize], b: &[usize]| {
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
    };
    for (name, (cpu, wall)) in names.iter().zip(best) {
        println!(
            "{name:18} {:7.1} sentences per CPU second, {:7.1} per wall second (best of {rounds})",
            texts.len() as f64 / cpu,
            texts.len() as f64 / wall
        );
    }
    for (name, d) in names.iter().zip(&decisions) {
        println!(
            "{name:18} accuracy {:.4}, agreement with {} {:.4}",
            share(d, &labels),
            names[0],
            share(d, &decisions[0])
        );
    }
}
