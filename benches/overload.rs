//! Overload and shutdown under load, the figures of RELIABILITY.md.
//!
//! 1. Quiet pass: every SST-2 sentence classified once (the expected answers) and c=1 latency.
//! 2. Capacity: closed loop at c=32, one sentence per request.
//! 3. Overload: open loop at --factor x capacity for --duration. Every accepted request must
//!    be answered with the quiet pass's answer; the excess must be refused with 429, quickly;
//!    peak RSS is sampled; after the load stops, single requests show when latency is back.
//! 4. SIGTERM under load: open loop at capacity, SIGTERM, every request sent before the signal
//!    must be answered 200, and the process must exit 0 within its shutdown timeout.
//!
//!   cargo bench --bench overload                         # release build, 60 s of overload
//!   cargo bench --profile dev --bench overload -- --duration 20s   # CI
//! Prints one JSON record per phase and exits non-zero if a goal is missed.

mod common;

use clap::Parser;
use common::{load_data, percentile, round, rss_mb, wait_healthy, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Overload, recovery and SIGTERM-under-load check of sentiment-server")]
struct Args {
    /// Offered load during overload, as a multiple of the measured capacity.
    #[arg(long, default_value_t = 5.0)]
    factor: f64,
    /// Length of the overload phase.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Length of the capacity measurement.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    capacity_duration: Duration,
    #[arg(long, default_value = "../shared/models/minilm-sst2")]
    model_dir: PathBuf,
    #[arg(long, default_value = "../shared/data/sst2_dev.tsv")]
    data: PathBuf,
    #[arg(long, default_value_t = 18091)]
    port: u16,
    /// Extra server flags, e.g. --server-args=--max-queue-size=256.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    server_args: Vec<String>,
    /// Append the JSON records to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Goals (RELIABILITY.md): p99 of refusals, peak RSS, recovery time.
    #[arg(long, default_value_t = 50.0)]
    goal_refusal_p99_ms: f64,
    #[arg(long, default_value_t = 600.0)]
    goal_peak_rss_mb: f64,
    #[arg(long, default_value_t = 5.0)]
    goal_recovery_s: f64,
    #[arg(long, hide = true)]
    bench: bool,
}

/// The pause between two recovery probes, and between the quiet probes that say what normal
/// is for them.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

/// One request's fate.
#[derive(Clone, Copy)]
enum Outcome {
    Answered { ms: f64, correct: bool },
    Refused { ms: f64 },
    Failed,
}

struct Target {
    client: reqwest::Client,
    url: String,
    data: Arc<Vec<(usize, String)>>,
    /// The quiet pass's top label and score per sentence.
    expected: Vec<(String, f64)>,
}

impl Target {
    async fn send(&self, index: usize) -> Outcome {
        let i = index % self.data.len();
        let started = Instant::now();
        let response = self
            .client
            .post(&self.url)
            .json(&json!({ "inputs": self.data[i].1 }))
            .send()
            .await;
        let ms = || started.elapsed().as_secs_f64() * 1000.0;
        match response {
            Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                Ok(v) => {
                    let (label, score) = &self.expected[i];
                    let correct = v[0]["label"] == label.as_str()
                        && (v[0]["score"].as_f64().unwrap_or(-1.0) - score).abs() < 1e-3;
                    Outcome::Answered { ms: ms(), correct }
                }
                Err(_) => Outcome::Failed,
            },
            Ok(r) if r.status() == 429 => Outcome::Refused { ms: ms() },
            _ => Outcome::Failed,
        }
    }
}

fn start_server(args: &Args) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_sentiment-server"))
        .arg("--model-dir")
        .arg(&args.model_dir)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &args.port.to_string(),
            "--log-level",
            "warn",
        ])
        .args(args.server_args.iter().filter(|a| !a.is_empty()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sentiment-server");
    let server = Server {
        name: "ours".into(),
        url: format!("http://127.0.0.1:{}", args.port),
        child: Some(child),
    };
    wait_healthy(&server.url, Duration::from_secs(120));
    server
}

/// Sends `rate` requests per second on schedule, whatever the answers, for `duration`.
async fn open_loop(
    target: &Arc<Target>,
    rate: f64,
    duration: Duration,
    stop_early: Option<&AtomicBool>,
) -> Vec<(Instant, tokio::task::JoinHandle<Outcome>)> {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent = Vec::new();
    let mut n = 0usize;
    while started.elapsed() < duration && !stop_early.is_some_and(|s| s.load(Ordering::Relaxed)) {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let target = target.clone();
        sent.push((
            Instant::now(),
            tokio::spawn(async move { target.send(n).await }),
        ));
        n += 1;
    }
    sent
}

fn summarize(phase: &str, outcomes: &[Outcome], seconds: f64) -> Value {
    let mut ok: Vec<f64> = Vec::new();
    let mut refused: Vec<f64> = Vec::new();
    let (mut wrong, mut failed) = (0, 0);
    for o in outcomes {
        match *o {
            Outcome::Answered { ms, correct } => {
                ok.push(ms);
                wrong += usize::from(!correct);
            }
            Outcome::Refused { ms } => refused.push(ms),
            Outcome::Failed => failed += 1,
        }
    }
    ok.sort_by(f64::total_cmp);
    refused.sort_by(f64::total_cmp);
    json!({
        "phase": phase,
        "seconds": round(seconds),
        "sent": outcomes.len(),
        "offered_per_s": round(outcomes.len() as f64 / seconds),
        "answered": ok.len(),
        "answered_per_s": round(ok.len() as f64 / seconds),
        "wrong_answers": wrong,
        "refused_429": refused.len(),
        "other_failures": failed,
        "answered_p50_ms": round(percentile(&ok, 50.0)),
        "answered_p99_ms": round(percentile(&ok, 99.0)),
        "refused_p50_ms": round(percentile(&refused, 50.0)),
        "refused_p99_ms": round(percentile(&refused, 99.0)),
    })
}

/// `value` is a number at most `goal` (NaN, a missing figure, never is).
fn within(value: f64, goal: f64) -> bool {
    value <= goal
}

fn emit(args: &Args, record: &Value) {
    common::emit(record, args.out.as_deref());
}

fn main() {
    let args = Args::parse();
    let data = Arc::new(load_data(&args.data));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut goals_missed: Vec<String> = Vec::new();

    let mut server = start_server(&args);
    let pid = server.child.as_ref().map(|c| c.id()).expect("pid");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .build()
        .expect("client");
    let url = format!("{}/predict", server.url);

    // 1. Quiet pass: the answers every later request must match, and the quiet latency.
    let (expected, quiet_p50) = runtime.block_on(async {
        let mut expected = Vec::new();
        for chunk in data.chunks(32) {
            let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
            let v: Value = client
                .post(&url)
                .json(&json!({ "inputs": texts }))
                .send()
                .await
                .expect("quiet pass")
                .json()
                .await
                .expect("json");
            for list in v.as_array().expect("batch answer") {
                expected.push((
                    list[0]["label"].as_str().unwrap_or_default().to_string(),
                    list[0]["score"].as_f64().unwrap_or_default(),
                ));
            }
        }
        let mut lat = Vec::new();
        for (_, text) in data.iter().take(100) {
            let t = Instant::now();
            client
                .post(&url)
                .json(&json!({ "inputs": text }))
                .send()
                .await
                .expect("quiet")
                .error_for_status()
                .expect("200");
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        (expected, percentile(&lat, 50.0))
    });
    let target = Arc::new(Target {
        client: client.clone(),
        url: url.clone(),
        data: data.clone(),
        expected,
    });

    // 2. Capacity: closed loop, 32 clients.
    let capacity = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (target, stop, answered, next) =
                    (target.clone(), stop.clone(), answered.clone(), next.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Outcome::Answered { .. } =
                            target.send(next.fetch_add(1, Ordering::Relaxed)).await
                        {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (before, t) = (answered.load(Ordering::SeqCst), Instant::now());
        tokio::time::sleep(args.capacity_duration).await;
        let rate = (answered.load(Ordering::SeqCst) - before) as f64 / t.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            let _ = task.await;
        }
        rate
    });
    // The recovery probes' own pattern in quiet (one request, then a pause): "normal" for
    // them. Back to back (`quiet_p50`) is faster where an idle CPU wakes slowly: on a 2-vCPU
    // Xeon VM, one sentence took 6 ms back to back, 16 ms after 20 ms idle and 41 ms after
    // 100 ms (even /live: 0.2 and 5.6 ms), so against the back-to-back p50 the probes never
    // looked recovered there, before or after overload.
    let probe_p50 = runtime.block_on(async {
        let mut lat = Vec::new();
        for probe in 0..30 {
            if let Outcome::Answered { ms, .. } = target.send(probe).await {
                lat.push(ms);
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        lat.sort_by(f64::total_cmp);
        percentile(&lat, 50.0)
    });
    emit(
        &args,
        &json!({"phase": "quiet", "capacity_req_per_s": round(capacity), "quiet_p50_ms": round(quiet_p50), "probe_p50_ms": round(probe_p50), "rss_mb": rss_mb(pid).map(round)}),
    );

    // 3. Overload, with RSS sampled each 100 ms, then recovery probes.
    let offered = capacity * args.factor;
    let (record, recovery_s) = runtime.block_on(async {
        let sampling = Arc::new(AtomicBool::new(true));
        let peak = Arc::new(Mutex::new(0.0f64));
        let sampler = {
            let (sampling, peak) = (sampling.clone(), peak.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_mb(pid) {
                        let mut p = peak.lock().unwrap();
                        *p = p.max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let started = Instant::now();
        let sent = open_loop(&target, offered, args.duration, None).await;
        let load_stopped = Instant::now();
        let seconds = started.elapsed().as_secs_f64();
        // Recovery: one request at a time until latency is within 2x the quiet probes' p50
        // (the same pattern: a request, then a pause), three in a row.
        let mut streak = 0;
        let mut recovered = None;
        let mut probe = 0;
        while load_stopped.elapsed() < Duration::from_secs(60) {
            let outcome = target.send(probe).await;
            match outcome {
                Outcome::Answered { ms, .. } if ms <= 2.0 * probe_p50.max(1.0) => streak += 1,
                _ => streak = 0,
            }
            probe += 1;
            if streak == 3 {
                recovered = Some(load_stopped.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        let mut outcomes = Vec::with_capacity(sent.len());
        for (_, handle) in sent {
            outcomes.push(handle.await.unwrap_or(Outcome::Failed));
        }
        sampling.store(false, Ordering::SeqCst);
        let _ = sampler.await;
        let mut record = summarize("overload", &outcomes, seconds);
        let peak_rss = *peak.lock().unwrap();
        record["factor"] = json!(args.factor);
        record["capacity_req_per_s"] = json!(round(capacity));
        record["peak_rss_mb"] = json!(round(peak_rss));
        record["recovery_s"] = json!(recovered.map(|s| (s * 100.0).round() / 100.0));
        (record, recovered)
    });
    emit(&args, &record);
    let n = |k: &str| record[k].as_f64().unwrap_or(f64::NAN);
    if n("wrong_answers") > 0.0 || n("other_failures") > 0.0 {
        goals_missed.push(format!(
            "{} wrong answers, {} failures under overload",
            record["wrong_answers"], record["other_failures"]
        ));
    }
    if n("refused_429") == 0.0 {
        goals_missed.push("nothing was refused: the load did not exceed capacity".into());
    }
    if !within(n("refused_p99_ms"), args.goal_refusal_p99_ms) {
        goals_missed.push(format!(
            "refusal p99 {} ms > {} ms",
            record["refused_p99_ms"], args.goal_refusal_p99_ms
        ));
    }
    if !within(n("peak_rss_mb"), args.goal_peak_rss_mb) {
        goals_missed.push(format!(
            "peak RSS {} MB > {} MB",
            record["peak_rss_mb"], args.goal_peak_rss_mb
        ));
    }
    if !recovery_s.is_some_and(|s| s <= args.goal_recovery_s) {
        goals_missed.push(format!(
            "latency back to normal after {recovery_s:?} s (goal {} s)",
            args.goal_recovery_s
        ));
    }

    // 4. SIGTERM under load: open loop at capacity; the signal 3 s in.
    let child = server.child.take().expect("server process");
    let record = runtime.block_on(async {
        let stop_sending = Arc::new(AtomicBool::new(false));
        let sender = {
            let (target, stop_sending) = (target.clone(), stop_sending.clone());
            tokio::spawn(async move {
                open_loop(
                    &target,
                    capacity,
                    Duration::from_secs(30),
                    Some(&stop_sending),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let signalled = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        let mut child = child;
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        let exit_s = signalled.elapsed().as_secs_f64();
        stop_sending.store(true, Ordering::SeqCst);
        let sent = sender.await.expect("sender");
        // A request sent in the last moments before the signal may still sit unread in the
        // socket when the drain begins (then it is refused, 503 or closed): those are counted
        // apart; everything sent earlier was accepted and must be answered.
        let margin = Duration::from_millis(100);
        let (mut before, mut racing, mut after) = (Vec::new(), Vec::new(), 0usize);
        for (at, handle) in sent {
            let outcome = handle.await.unwrap_or(Outcome::Failed);
            if at + margin < signalled {
                before.push(outcome);
            } else if at < signalled {
                racing.push(outcome);
            } else {
                after += 1;
            }
        }
        let mut record = summarize("sigterm", &before, 3.0);
        record["sent_in_last_100ms"] = json!(racing.len());
        record["answered_in_last_100ms"] = json!(racing
            .iter()
            .filter(|o| matches!(o, Outcome::Answered { .. }))
            .count());
        record["sent_after_signal"] = json!(after);
        record["exit_code"] = json!(exit.code());
        record["exit_s"] = json!((exit_s * 100.0).round() / 100.0);
        record
    });
    emit(&args, &record);
    if record["answered"] != record["sent"] || record["exit_code"] != 0 {
        goals_missed.push(format!(
            "SIGTERM: {} of {} requests sent before the signal answered, exit code {}",
            record["answered"], record["sent"], record["exit_code"]
        ));
    }

    if goals_missed.is_empty() {
        eprintln!("all goals met");
    } else {
        for goal in &goals_missed {
            eprintln!("GOAL MISSED: {goal}");
        }
        std::process::exit(1);
    }
}
