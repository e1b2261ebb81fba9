//! Peak resident memory of one forward pass of a single long input, for attention memory work
//! (ModernBERT takes up to 8,192 tokens). Token ids are synthetic (the model's outputs do not
//! matter here); the model runs on the CPU in f32, as the server would pick.
//!
//!   cargo run --example long_input_memory -- MODEL_DIR [TOKENS (default 8192)] [BATCH (default 1)]
//!
//! Prints VmHWM (peak RSS) after loading and after the pass, from /proc (Linux).

use sentiment_server::model::Dtype;
use sentiment_server::checkpoint::ModelFiles;
use sentiment_server::model::{self, Batch, Compute, CpuKernels};
use std::time::Instant;

/// A field of /proc/self/status in MiB (`VmHWM`, `VmRSS`).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().expect("MODEL_DIR");
    let arg =
        |i: usize, default: usize| args.get(i).map_or(default, |v| v.parse().expect("a count"));
    let (tokens, batch_size) = (arg(1, 8192), arg(2, 1));
    let files = ModelFiles::locate(std::path::Path::new(dir)).expect("model files");
    let config = files.read_config().expect("config");
    let decision = Compute::decide(
        &candle_core::Device::Cpu,
        Dtype::F32,
        CpuKernels::Auto,
        config.family,
    )
    .expect("compute");
    let compute: Compute = decision.compute;
    let loaded = model::load(files, config, &compute).expect("load");
    let loaded_peak = status_mib("VmHWM");
    // [CLS] tokens... [SEP]: ids cycle through the vocabulary's low range.
    let ids: Vec<u32> = (0..tokens)
        .map(|i| match i {
            0 => 0,
            i if i + 1 == tokens => 2,
            i => 10 + (i as u32 * 7) % 600,
        })
        .collect();
    let mut batch = Batch::default();
    for _ in 0..batch_size {
        batch.push(&ids, &[]);
    }
    let start = Instant::now();
    let logits = loaded.classifier.forward(&batch).expect("forward");
    println!(
        "{dir}: {batch_size} x {tokens} tokens, {:.1} s, peak RSS after load {loaded_peak:.0} MiB, after the pass {:.0} MiB (+{:.0}); logits {:?}",
        start.elapsed().as_secs_f64(),
        status_mib("VmHWM"),
        status_mib("VmHWM") - loaded_peak,
        logits.first()
    );
}
