//! Rerank load benchmark: ours against the FastAPI + transformers cross-encoder baseline
//! (benches/baseline/rerank_server.py), same model, same requests, same machine, one run.
//!
//! Each request is one query and `--passages` passages of about `--words` words (SST-2
//! validation sentences joined in order), posted to TEI's `POST /rerank` by `c` clients in a
//! closed loop. One JSON record per server: documents/s, requests/s, p50/p90/p99 latency,
//! errors and peak RSS; then ours against the baseline, and whether each server ranks a probe
//! request as the baseline does.
//!
//!   .venv-bench/bin/python benches/baseline/make_cross_encoder.py   # target/cross-encoder-minilm
//!   cargo bench --bench rerank -- --servers ours,ours-int8,baseline --concurrency 8 --passages 20

mod common;

use clap::Parser;
use common::{load_data, percentile, round, wait_healthy, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The queries, one per request in turn.
const QUERIES: [&str; 8] = [
    "a moving drama about family",
    "which film has a sad ending?",
    "funny comedy with great actors",
    "a boring movie with a weak plot",
    "beautiful cinematography and music",
    "what is a good thriller to watch?",
    "a film critics hated",
    "an inspiring true story",
];

#[derive(Parser, Debug)]
#[command(
    about = "Closed-loop rerank benchmark: POST /rerank, one query and N passages per request"
)]
struct Args {
    /// Servers in order: baseline, or ours with optional suffixes as in the load bench
    /// (`ours-int8`, `ours-avx2`, ...).
    #[arg(long, default_value = "ours,baseline", value_delimiter = ',')]
    servers: Vec<String>,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Passages per request.
    #[arg(long, default_value_t = 20)]
    passages: usize,
    /// Words per passage (at least; whole sentences are joined).
    #[arg(long, default_value_t = 100)]
    words: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// A one-output cross-encoder (benches/baseline/make_cross_encoder.py makes this one).
    #[arg(long, default_value = "target/cross-encoder-minilm")]
    model_dir: PathBuf,
    #[arg(long, default_value = "../shared/data/sst2_dev.tsv")]
    data: PathBuf,
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long, default_value = ".venv-bench/bin/python")]
    python: PathBuf,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 18133)]
    port: u16,
    /// Run the servers this many times, interleaved; the comparison takes medians.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

fn start(name: &str, args: &Args) -> Server {
    let url = format!("http://127.0.0.1:{}", args.port);
    let mut command = if name == "baseline" {
        let mut c = Command::new(&args.python);
        c.arg("benches/baseline/rerank_server.py")
            .env("MODEL_DIR", &args.model_dir)
            .env("PORT", args.port.to_string())
            .env("ACCESS_LOG", "0");
        c
    } else {
        assert!(name.starts_with("ours"), "unknown server {name}");
        let bin = (args.server_bin.clone())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sentiment-server")));
        let mut c = Command::new(bin);
        c.arg("--model-dir").arg(&args.model_dir);
        c.args(["--host", "127.0.0.1", "--port", &args.port.to_string()]);
        c.args(["--log-level", "warn"]);
        for part in name.split('-').skip(1) {
            match part {
                "bf16" | "int8" => c.args(["--dtype", part]),
                level => c.args(["--cpu-kernels", level]),
            };
        }
        c
    };
    let child = (command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn())
    .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let server = Server {
        name: name.to_string(),
        url,
        child: Some(child),
    };
    wait_healthy(&server.url, Duration::from_secs(180));
    server
}

/// Passages of at least `words` words: consecutive sentences joined.
fn passages(sentences: &[(usize, String)], words: usize) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut count) = (String::new(), 0);
    for (_, sentence) in sentences {
        current.push_str(sentence);
        current.push(' ');
        count += sentence.split_whitespace().count();
        if count >= words {
            out.push(std::mem::take(&mut current).trim_end().to_string());
            count = 0;
        }
    }
    out
}

/// Request `i`: its query and passages.
fn request(i: usize, pool: &[String], n: usize) -> Value {
    let texts: Vec<&str> = (0..n)
        .map(|k| pool[(i * n + k) % pool.len()].as_str())
        .collect();
    json!({"query": QUERIES[i % QUERIES.len()], "texts": texts})
}

/// The indices of an answer, best first; None for a failed request.
async fn ranked(client: &reqwest::Client, url: &str, body: &Value) -> Option<Vec<u64>> {
    let r = client.post(url).json(body).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let answer: Value = r.json().await.ok()?;
    answer
        .as_array()?
        .iter()
        .map(|x| x["index"].as_u64())
        .collect()
}

fn run(server: &Server, pool: &Arc<Vec<String>>, args: &Args) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{}/rerank", server.url);
    let (n, c) = (args.passages, args.concurrency);
    let next = Arc::new(AtomicUsize::new(0));
    let (recording, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c * 2)
        .build()
        .unwrap();
    let pid = server.child.as_ref().map(|c| c.id());
    let (seconds, peak, probe) = runtime.block_on(async {
        let probe = ranked(&http, &url, &request(0, pool, n)).await;
        let mut tasks = Vec::new();
        for _ in 0..c {
            let (http, url, pool, next) = (http.clone(), url.clone(), pool.clone(), next.clone());
            let (recording, stop) = (recording.clone(), stop.clone());
            let (latencies, errors) = (latencies.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let body = request(next.fetch_add(1, Ordering::Relaxed), &pool, n);
                    let sent = Instant::now();
                    let answer = ranked(&http, &url, &body).await;
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    if !recording.load(Ordering::Relaxed) {
                        continue;
                    }
                    match answer {
                        Some(order) if order.len() == n => latencies.lock().unwrap().push(elapsed),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let window = (args.warmup, args.duration);
        let (seconds, peak) = common::measure(tasks, &recording, &stop, window, pid).await;
        (seconds, peak, probe)
    });
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let requests = lat.len() as f64;
    json!({
        "server": server.name,
        "scenario": "rerank",
        "concurrency": c,
        "passages": n,
        "words": args.words,
        "duration_s": round(seconds),
        "requests": lat.len(),
        "req_per_s": round(requests / seconds),
        "documents_per_s": round(requests * n as f64 / seconds),
        "p50_ms": round(percentile(&lat, 50.0)),
        "p90_ms": round(percentile(&lat, 90.0)),
        "p99_ms": round(percentile(&lat, 99.0)),
        "errors": errors.load(Ordering::Relaxed),
        "peak_rss_mb": round(peak),
        "probe_order": probe,
    })
}

fn median(records: &[Value], server: &str, key: &str) -> f64 {
    let mut v: Vec<f64> = (records.iter())
        .filter(|r| r["server"] == server)
        .filter_map(|r| r[key].as_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args = Args::parse();
    let sentences = load_data(&args.data);
    let pool = Arc::new(passages(&sentences, args.words));
    assert!(
        pool.len() >= args.passages,
        "too few passages in {}",
        args.data.display()
    );
    let mut records = Vec::new();
    for round in 1..=args.rounds {
        for name in &args.servers {
            let server = start(name, &args);
            let mut record = run(&server, &pool, &args);
            record["round"] = json!(round);
            common::emit(&record, args.out.as_deref());
            records.push(record);
        }
    }
    let probe = |name: &str| {
        records
            .iter()
            .find(|r| r["server"] == name)
            .map(|r| &r["probe_order"])
    };
    eprintln!("\n| server | documents/s | baseline documents/s | ratio | p50 / p99 ms | baseline p50 / p99 ms | probe ranked as the baseline |");
    eprintln!("| --- | --- | --- | --- | --- | --- | --- |");
    for name in args.servers.iter().filter(|s| *s != "baseline") {
        let (o, b) = (
            |k| median(&records, name, k),
            |k| median(&records, "baseline", k),
        );
        eprintln!(
            "| {name} | {:.1} | {:.1} | {:.2}x | {:.1} / {:.1} | {:.1} / {:.1} | {} |",
            o("documents_per_s"),
            b("documents_per_s"),
            o("documents_per_s") / b("documents_per_s"),
            o("p50_ms"),
            o("p99_ms"),
            b("p50_ms"),
            b("p99_ms"),
            match (probe(name), probe("baseline")) {
                (Some(a), Some(b)) =>
                    if a == b {
                        "yes"
                    } else {
                        "NO"
                    },
                _ => "-",
            },
        );
    }
}
