#!/usr/bin/env python3
"""Hot reload under load (issue 17, item 6): clients on two models of a repository while a new
version of one is dropped in and a broken version of the other, with the memory watched.

    cargo build --release
    python3 benches/reload.py [--server-bin target/release/sentiment-server] [--shared ../shared]
        [--clients 8] [--duration 30] [--poll 1] [--out benches/results/reload.jsonl]

Standard library only: the load comes from this process's threads over plain HTTP, not from
the server's code. The repository (a temporary directory) starts with
  sentiment/1  minilm-sst2 (f32), the default model,
  tiny/1       the bert-tiny-3class fixture;
at a third of the run `sentiment/2` (the f16 copy of minilm-sst2) is renamed into place, at
half of it `tiny/2` with truncated weights. Every request is an Open Inference Protocol infer
call, whose answer names the version that served it. Printed (and appended to --out as one
JSON record): requests, errors and requests/s per model; how long after its rename version 2
of sentiment first answered and when version 1 last did; whether the broken tiny/2 ever
answered; the server's RSS before the drop, at its peak and at the end, after version 1 was
released.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_in(source, target):
    """Symlinks `source`'s files into `target`, renamed into place: the atomic convention."""
    staging = os.path.join(os.path.dirname(target), ".staging-" + os.path.basename(target))
    os.makedirs(staging)
    for name in os.listdir(source):
        os.symlink(os.path.join(source, name), os.path.join(staging, name))
    os.rename(staging, target)


def broken_in(source, target):
    """`source`'s config and tokenizer with its weights cut to half: fails to load."""
    staging = os.path.join(os.path.dirname(target), ".staging-" + os.path.basename(target))
    os.makedirs(staging)
    for name in os.listdir(source):
        if name == "model.safetensors":
            with open(os.path.join(source, name), "rb") as f:
                data = f.read()
            with open(os.path.join(staging, name), "wb") as f:
                f.write(data[: len(data) // 2])
        else:
            shutil.copy(os.path.join(source, name), staging)
    os.rename(staging, target)


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def infer(base, model, text):
    body = json.dumps(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
    ).encode()
    request = urllib.request.Request(
        f"{base}/v2/models/{model}/infer",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["model_version"]


def wait_ready(base, models, process, within=120):
    deadline = time.time() + within
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited ({process.returncode}) before it was ready")
        try:
            if all(get(f"{base}/v2/models/{m}/ready")[0] == 200 for m in models):
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"models {models} not ready within {within} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server-bin", default=os.path.join(ROOT, "target/release/sentiment-server"))
    p.add_argument("--shared", default=os.path.normpath(os.path.join(ROOT, "..", "shared")))
    p.add_argument("--clients", type=int, default=8, help="concurrent clients, half per model")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--poll", type=float, default=1.0, help="--repository-poll-interval, seconds")
    p.add_argument("--out", help="append the JSON record to this file")
    args = p.parse_args()

    models = os.path.join(args.shared, "models")
    fixtures = os.path.join(args.shared, "fixtures")
    with open(os.path.join(args.shared, "data", "sst2_dev.tsv"), encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f if "\t" in line][1:]

    repo = tempfile.mkdtemp(prefix="reload-bench-")
    os.makedirs(os.path.join(repo, "sentiment"))
    os.makedirs(os.path.join(repo, "tiny"))
    link_in(os.path.join(models, "minilm-sst2"), os.path.join(repo, "sentiment", "1"))
    link_in(os.path.join(fixtures, "bert-tiny-3class"), os.path.join(repo, "tiny", "1"))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            args.server_bin,
            "--model-repository", repo,
            "--default-model", "sentiment",
            "--repository-poll-interval", f"{args.poll}s",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--log-level", "warn",
        ],
        env={**os.environ, "ACCESS_LOG": "0"},
    )
    try:
        wait_ready(base, ["sentiment", "tiny"], server)
        record = run(args, base, server, repo, texts, models, fixtures)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(repo, ignore_errors=True)
    print(json.dumps(record, indent=2))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    ok = (
        record["errors"] == 0
        and record["tiny"]["answered_by_broken_version"] == 0
        and record["sentiment"]["first_v2_answer_s"] is not None
    )
    sys.exit(0 if ok else 1)


def run(args, base, server, repo, texts, models, fixtures):
    start = time.time()
    stop = threading.Event()
    lock = threading.Lock()
    answers = {"sentiment": [], "tiny": []}  # (time since start, version or None, error)

    def client(i):
        model = "sentiment" if i % 2 == 0 else "tiny"
        n = i
        while not stop.is_set():
            text = texts[n % len(texts)]
            n += args.clients
            try:
                version, error = infer(base, model, text), None
            except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
                version, error = None, repr(e)
            with lock:
                answers[model].append((time.time() - start, version, error))

    memory = []

    def watch():
        while not stop.is_set():
            memory.append((time.time() - start, rss_mb(server.pid)))
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    new_at = args.duration / 3
    broken_at = args.duration / 2
    time.sleep(new_at)
    link_in(os.path.join(models, "minilm-sst2-f16"), os.path.join(repo, "sentiment", "2"))
    new_at = time.time() - start
    time.sleep(max(0.0, broken_at - new_at))
    broken_in(os.path.join(fixtures, "bert-tiny-3class"), os.path.join(repo, "tiny", "2"))
    broken_at = time.time() - start
    time.sleep(max(0.0, args.duration - broken_at))
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.time() - start

    info = json.loads(get(f"{base}/info")[1])
    states = {
        m["name"]: {str(v["version"]): v["state"] for v in m.get("versions", [])}
        for m in info.get("models", [])
    }

    def summary(model):
        rows = answers[model]
        errors = [e for _, _, e in rows if e]
        return {
            "requests": len(rows),
            "errors": len(errors),
            "first_errors": errors[:3],
            "requests_per_s": round(len(rows) / elapsed, 1),
            "versions": states.get(model, {}),
        }

    sentiment = summary("sentiment")
    v2 = [t for t, v, _ in answers["sentiment"] if v == "2"]
    v1_after = [t for t, v, _ in answers["sentiment"] if v == "1" and t > new_at]
    sentiment["first_v2_answer_s"] = round(min(v2) - new_at, 2) if v2 else None
    sentiment["last_v1_answer_s"] = round(max(v1_after) - new_at, 2) if v1_after else None
    tiny = summary("tiny")
    tiny["answered_by_broken_version"] = sum(1 for _, v, _ in answers["tiny"] if v == "2")

    def median_rss(lo, hi):
        values = [m for t, m in memory if lo <= t < hi and m is not None]
        return round(statistics.median(values), 1) if values else None

    return {
        "cpu": cpu_name(),
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "poll_interval_s": args.poll,
        "new_version_at_s": round(new_at, 2),
        "broken_version_at_s": round(broken_at, 2),
        "errors": sentiment["errors"] + tiny["errors"],
        "sentiment": sentiment,
        "tiny": tiny,
        "rss_mb": {
            "before_drop": median_rss(new_at - 3, new_at),
            "peak": round(max(m for _, m in memory if m is not None), 1),
            "end": median_rss(elapsed - 3, elapsed),
        },
    }


def cpu_name():
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
