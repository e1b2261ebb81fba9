//! HTTP load benchmark: ours against the FastAPI + transformers baseline, same model, same
//! sentences, same machine, one run.
//!
//! Replays SST-2 validation sentences in a closed loop (each of `c` clients sends its next
//! request as soon as the last is answered) and prints one JSON record per server and scenario:
//! req/s, sentences/s, p50/p90/p99 latency, errors, accuracy of the answers and peak RSS of the
//! server under load. Then a table of ours against the baseline.
//!
//!   cargo bench --bench load                                  # both servers, default scenarios
//!   cargo bench --bench load -- --servers ours,ours-bf16,baseline --scenarios 1x1,32x1
//!   cargo bench --bench load -- --servers ours-avx2,ours-avx512,baseline   # CPU kernel levels
//!   cargo bench --bench load -- --servers ours,ours-grpc,baseline   # HTTP vs gRPC, same texts
//!   cargo bench --bench load -- --url http://127.0.0.1:8000   # a server that is already running
//!   cargo bench --bench load -- --rounds 3 ...                # interleaved repeats, medians

mod common;

use clap::Parser;
use common::{load_data, percentile, round, wait_healthy, Server};
use sentiment_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sentiment_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use sentiment_server::grpc::proto::ModelInferRequest;
use sentiment_server::service::v2::{decode_strings, encode_strings};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Closed-loop HTTP load benchmark for /predict")]
struct Args {
    /// Servers to start and measure, in order: baseline, or ours with optional suffixes: a CPU
    /// kernel level (`ours-avx2` is `--cpu-kernels avx2`; avx512, neon, portable, candle too),
    /// `-bf16` (`--dtype bf16`) or `-int8` (`--dtype int8`), and/or `-grpc` (the clients call the Open Inference Protocol's
    /// ModelInfer over gRPC, on --port + 1, instead of POST /predict), e.g. ours, ours-bf16,
    /// ours-avx2, ours-avx512-bf16, ours-avx2-int8, ours-grpc.
    #[arg(long, default_value = "ours,baseline", value_delimiter = ',')]
    servers: Vec<String>,
    /// Measure this already-running server instead of starting any.
    #[arg(long)]
    url: Option<String>,
    /// Scenarios as CONCURRENCYxSENTENCES_PER_REQUEST.
    #[arg(long, default_value = "1x1,32x1,8x32", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Measured time per scenario.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up per scenario.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long, default_value = "../shared/models/minilm-sst2")]
    model_dir: PathBuf,
    #[arg(long, default_value = "../shared/data/sst2_dev.tsv")]
    data: PathBuf,
    /// Our server binary (default: the one cargo built with this benchmark).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Another build of our server (e.g. an earlier commit's), started for the servers named
    /// `alt[-<level>][-bf16]`, to compare two builds in one run.
    #[arg(long)]
    alt_bin: Option<PathBuf>,
    /// Extra arguments for our server, e.g. --server-args=--dtype=bf16
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    server_args: Vec<String>,
    /// Python of the baseline's virtual environment (scripts/setup-baseline.sh).
    #[arg(long, default_value = ".venv-bench/bin/python")]
    python: PathBuf,
    /// Append the JSON records to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Label for the records of `--url` or ours (e.g. "ours-4-threads").
    #[arg(long)]
    label: Option<String>,
    #[arg(long, default_value_t = 18123)]
    port: u16,
    /// Run the whole sequence of servers this many times, interleaved, and compare medians:
    /// on shared machines one run's figures move by 10-20%.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// cargo bench passes --bench; accepted and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn start(name: &str, args: &Args) -> Server {
    let url = format!("http://127.0.0.1:{}", args.port);
    let mut command = match name {
        ours if ["ours", "alt"].contains(&ours.split('-').next().unwrap_or_default()) => {
            let bin = if ours.starts_with("alt") {
                args.alt_bin.clone().expect("--alt-bin for an alt server")
            } else {
                args.server_bin
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sentiment-server")))
            };
            let mut c = Command::new(bin);
            c.arg("--model-dir")
                .arg(&args.model_dir)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &args.port.to_string(),
                    "--log-level",
                    "warn",
                ])
                .args(args.server_args.iter().filter(|a| !a.is_empty()));
            for part in ours.split('-').skip(1) {
                match part {
                    "bf16" => c.args(["--dtype", "bf16"]),
                    "int8" => c.args(["--dtype", "int8"]),
                    "grpc" => c.args(["--grpc-port", &(args.port + 1).to_string()]),
                    level => c.args(["--cpu-kernels", level]),
                };
            }
            c
        }
        "baseline" => {
            let mut c = Command::new(&args.python);
            c.arg("benches/baseline/server.py")
                .env("MODEL_DIR", &args.model_dir)
                .env("PORT", args.port.to_string())
                .env("HOST", "127.0.0.1");
            c
        }
        other => panic!("unknown server {other}: use baseline, or ours[-<level>][-bf16|-int8] (alt-... with --alt-bin)"),
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let server = Server {
        name: args
            .label
            .clone()
            .filter(|_| name == "ours")
            .unwrap_or_else(|| name.to_string()),
        url,
        child: Some(child),
    };
    wait_healthy(&server.url, Duration::from_secs(180));
    server
}

/// How the server computes, from its `/info` (ours), for the records.
fn compute_of(url: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let info = match reqwest::get(format!("{url}/info")).await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.unwrap_or(Value::Null),
            _ => Value::Null,
        };
        info.get("compute").cloned().unwrap_or(Value::Null)
    })
}

/// The CPU's model name and whether it has AVX-512 / AVX512-BF16, for the records.
fn cpu() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    json!({
        "model": field("model name"),
        "family": field("cpu family"),
        "model_number": field("model\t"),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "avx2": has("avx2"),
        "avx512f": has("avx512f"),
        "avx512_bf16": has("avx512_bf16"),
    })
}

fn run_scenario(
    server: &Server,
    data: &Arc<Vec<(usize, String)>>,
    c: usize,
    batch: usize,
    args: &Args,
) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let (errors, correct, answered) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c * 2)
        .build()
        .unwrap();
    let grpc = server.name.split('-').any(|part| part == "grpc");
    let url = if grpc {
        format!("http://127.0.0.1:{}", args.port + 1)
    } else {
        format!("{}/predict", server.url)
    };
    let pid = server.child.as_ref().map(|c| c.id());

    let measured = runtime.block_on(async {
        let mut tasks = Vec::new();
        // The model's name is its directory's, as /info's model_id.
        let model = args
            .model_dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        // One HTTP/2 connection per gRPC client, as each of c separate clients would have.
        let mut clients = Vec::with_capacity(c);
        for _ in 0..c {
            clients.push(if grpc {
                let channel = tonic::transport::Channel::from_shared(url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .expect("gRPC connection");
                Client::Grpc(GrpcInferenceServiceClient::new(channel), model.clone())
            } else {
                Client::Http(http.clone(), url.clone())
            });
        }
        for mut client in clients {
            let (data, next) = (data.clone(), next.clone());
            let (recording, stop, latencies) = (recording.clone(), stop.clone(), latencies.clone());
            let (errors, correct, answered) = (errors.clone(), correct.clone(), answered.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let start = next.fetch_add(batch, Ordering::Relaxed);
                    let items: Vec<&(usize, String)> = (0..batch)
                        .map(|i| &data[(start + i) % data.len()])
                        .collect();
                    let texts: Vec<&str> = items.iter().map(|(_, t)| t.as_str()).collect();
                    let sent = Instant::now();
                    let parsed = client.top_labels(&texts).await;
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    if !recording.load(Ordering::Relaxed) {
                        continue;
                    }
                    match parsed {
                        Some(tops) => {
                            for (top, (label, _)) in tops.iter().zip(&items) {
                                let top = top.as_str();
                                let predicted = usize::from(top == "POSITIVE" || top == "LABEL_1");
                                correct
                                    .fetch_add(u64::from(predicted == *label), Ordering::Relaxed);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            latencies.lock().unwrap().push(elapsed);
                        }
                        None => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        common::measure(tasks, &recording, &stop, (args.warmup, args.duration), pid).await
    });
    let (seconds, peak_rss) = measured;
    let compute = if server.name == "baseline" {
        Value::Null
    } else {
        compute_of(&server.url)
    };
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let requests = lat.len() as f64;
    let sentences = answered.load(Ordering::Relaxed) as f64;
    json!({
        "server": server.name,
        "concurrency": c,
        "batch": batch,
        "duration_s": (seconds * 10.0).round() / 10.0,
        "requests": lat.len(),
        "req_per_s": round(requests / seconds),
        "sentences_per_s": round(sentences / seconds),
        "p50_ms": round(percentile(&lat, 50.0)),
        "p90_ms": round(percentile(&lat, 90.0)),
        "p99_ms": round(percentile(&lat, 99.0)),
        "errors": errors.load(Ordering::Relaxed),
        "accuracy": if sentences > 0.0 { (correct.load(Ordering::Relaxed) as f64 / sentences * 1e4).round() / 1e4 } else { f64::NAN },
        "peak_rss_mb": if pid.is_some() { round(peak_rss) } else { f64::NAN },
        "compute": compute,
        "cpu": cpu(),
    })
}

/// One load client: POST /predict, or ModelInfer over gRPC.
enum Client {
    Http(reqwest::Client, String),
    /// The client and the model's name.
    Grpc(
        GrpcInferenceServiceClient<tonic::transport::Channel>,
        String,
    ),
}

impl Client {
    /// The best label of each text, or None for a failed request.
    async fn top_labels(&mut self, texts: &[&str]) -> Option<Vec<String>> {
        match self {
            Client::Http(client, url) => {
                let body = match texts {
                    [one] => json!({ "inputs": one }),
                    _ => json!({ "inputs": texts }),
                };
                let r = client.post(url.as_str()).json(&body).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                let v: Value = r.json().await.ok()?;
                let lists: Vec<&Value> = match texts {
                    [_] => vec![&v],
                    _ => v.as_array()?.iter().collect(),
                };
                lists
                    .iter()
                    .map(|l| l[0]["label"].as_str().map(str::to_owned))
                    .collect()
            }
            Client::Grpc(client, model) => {
                // As tritonclient sends BYTES: raw, length-prefixed; only `label` comes back.
                let raw = encode_strings(texts.iter().copied());
                let request = ModelInferRequest {
                    model_name: model.clone(),
                    inputs: vec![InferInputTensor {
                        name: "text".into(),
                        datatype: "BYTES".into(),
                        shape: vec![texts.len() as i64],
                        ..Default::default()
                    }],
                    outputs: vec![InferRequestedOutputTensor {
                        name: "label".into(),
                        ..Default::default()
                    }],
                    raw_input_contents: vec![raw],
                    ..Default::default()
                };
                let response = client.model_infer(request).await.ok()?.into_inner();
                decode_strings(response.raw_output_contents.first()?, "label").ok()
            }
        }
    }
}

fn parse_scenario(s: &str) -> (usize, usize) {
    let (c, b) = s.split_once('x').unwrap_or((s, "1"));
    (
        c.trim().parse().expect("concurrency"),
        b.trim().parse().expect("batch"),
    )
}

fn main() {
    let args = Args::parse();
    let data = Arc::new(load_data(&args.data));
    let scenarios: Vec<(usize, usize)> = args.scenarios.iter().map(|s| parse_scenario(s)).collect();
    let mut records: Vec<Value> = Vec::new();
    let names: Vec<String> = if args.url.is_some() {
        vec!["external".into()]
    } else {
        args.servers.clone()
    };
    for round in 1..=args.rounds {
        for name in &names {
            let server = match &args.url {
                Some(url) => {
                    wait_healthy(url, Duration::from_secs(30));
                    Server {
                        name: args.label.clone().unwrap_or_else(|| "external".into()),
                        url: url.clone(),
                        child: None,
                    }
                }
                None => start(name, &args),
            };
            for &(c, batch) in &scenarios {
                let mut record = run_scenario(&server, &data, c, batch, &args);
                record["round"] = json!(round);
                common::emit(&record, args.out.as_deref());
                records.push(record);
            }
        }
    }
    print_comparison(&records);
}

/// The median of `key` over the records of `server` in one scenario (over the rounds).
fn median(records: &[Value], server: &Value, c: &Value, batch: &Value, key: &str) -> f64 {
    let mut v: Vec<f64> = records
        .iter()
        .filter(|r| &r["server"] == server && &r["concurrency"] == c && &r["batch"] == batch)
        .filter_map(|r| r[key].as_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Each of ours against the baseline, scenario by scenario (medians over the rounds).
fn print_comparison(records: &[Value]) {
    let baseline = json!("baseline");
    let mut scenarios: Vec<(&Value, &Value)> = Vec::new();
    for r in records.iter().filter(|r| r["server"] == baseline) {
        if !scenarios.contains(&(&r["concurrency"], &r["batch"])) {
            scenarios.push((&r["concurrency"], &r["batch"]));
        }
    }
    if scenarios.is_empty() {
        return;
    }
    let mut ours: Vec<&Value> = Vec::new();
    for r in records.iter().filter(|r| r["server"] != baseline) {
        if !ours.contains(&&r["server"]) {
            ours.push(&r["server"]);
        }
    }
    eprintln!("\n| server | scenario | sent/s | baseline sent/s | ratio | p50 / p99 ms | baseline p50 / p99 ms | p50 ratio |");
    eprintln!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for server in ours {
        for &(c, batch) in &scenarios {
            let o = |k: &str| median(records, server, c, batch, k);
            let b = |k: &str| median(records, &baseline, c, batch, k);
            if o("sentences_per_s").is_nan() {
                continue;
            }
            eprintln!(
                "| {} | c={c} x{batch} | {:.1} | {:.1} | {:.2}x | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}x |",
                server.as_str().unwrap_or("?"),
                o("sentences_per_s"),
                b("sentences_per_s"),
                o("sentences_per_s") / b("sentences_per_s"),
                o("p50_ms"),
                o("p99_ms"),
                b("p50_ms"),
                b("p99_ms"),
                o("p50_ms") / b("p50_ms"),
            );
        }
    }
}
