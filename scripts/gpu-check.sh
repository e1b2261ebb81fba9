#!/usr/bin/env bash
# Checks the CUDA build on a GPU machine (made for the lent H100: CUDA 13 driver libraries in
# /usr/local/cuda/lib64, Python 3, no Rust toolchain, no network). Self-contained: needs only
# bash, coreutils, python3 (standard library) and the bundle that scripts/pack-gpu.sh made.
#
#   bash scripts/gpu-check.sh [BUNDLE]        BUNDLE: .gpu (default), a folder or a .tar.xz
#
# What it does, writing everything under $OUT (default ./gpu-check-out):
#   1. environment: nvidia-smi, the libraries the binaries resolve (ldd), glibc;
#   2. parity: the parity module of the compiled tests/testsuite with TEST_DEVICE=cuda and SHARED_DIR at the bundle's
#      data: every fixture and minilm-sst2 (fp16 weights, upcast; see pack-gpu.sh) against
#      PyTorch in fp32 at the GPU tolerance (1e-3);
#   3. serving: starts the server on minilm-sst2-f16 with --device cuda and --dtype f32, f16
#      and bf16 in turn, classifies SST-2 validation (872 sentences, one per request, from
#      concurrent client threads), and reports accuracy, agreement of f16/bf16 with f32
#      (top label), the largest score difference from f32, non-finite scores, and throughput;
#   4. summary.txt / summary.json; the exit status is 0 only when every step passed.
#
# Environment (all optional):
#   OUT                 output folder (the device tool sets it)
#   CUDA_LIB_DIRS       colon-separated library folders put first on LD_LIBRARY_PATH
#                       (default /usr/local/cuda/lib64)
#   TEST_DEVICE=cuda    device of the parity run (cuda:N for another GPU)
#   SERVE_DEVICE=cuda   device of the server runs (cpu: a dry run of this script without a GPU)
#   DTYPES="f32 f16 bf16"  server runs; f32 is the baseline of the comparisons
#   CONCURRENCY=64      client threads
#   PARITY_CPU=0        1: also run the parity test on this machine's CPU (to tell a data
#                       problem from a GPU one)
#   MIN_ACCURACY=0.88   an SST-2 accuracy below this fails (PyTorch fp32: 0.8968)
#   WORK_DIR            scratch folder for an unpacked bundle (default ${TMPDIR:-/tmp}/...)
set -uo pipefail # no -e: every step runs and reports, failures are collected

BUNDLE=${1:-.gpu}
OUT=${OUT:-$PWD/gpu-check-out}
CUDA_LIB_DIRS=${CUDA_LIB_DIRS:-/usr/local/cuda/lib64}
TEST_DEVICE=${TEST_DEVICE:-cuda}
SERVE_DEVICE=${SERVE_DEVICE:-cuda}
DTYPES=${DTYPES:-f32 f16 bf16}
CONCURRENCY=${CONCURRENCY:-64}
PARITY_CPU=${PARITY_CPU:-0}
MIN_ACCURACY=${MIN_ACCURACY:-0.88}
WORK_DIR=${WORK_DIR:-${TMPDIR:-/tmp}/sentiment-gpu-check}
PYTHON=${PYTHON:-python3}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
tee_pid=$!
started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }
results=()
record() { # record NAME pass|fail DETAIL
    results+=("$1	$2	$3")
    printf -- '--- %s: %s %s\n' "$1" "$2" "$3"
}

# ---------------------------------------------------------------------------------------------
step "bundle"
case "$BUNDLE" in
    *.tar.xz) archive=$BUNDLE ;;
    *) if [[ -f $BUNDLE/bundle.tar.xz ]]; then archive=$BUNDLE/bundle.tar.xz; else archive=; fi ;;
esac
if [[ -n $archive ]]; then
    root=$WORK_DIR/bundle
    rm -rf "$root" && mkdir -p "$root"
    echo "unpacking $archive -> $root"
    if command -v xz >/dev/null; then
        xz -dc "$archive" | tar -C "$root" -xf -
    else
        "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$root"
    fi || { echo "error: cannot unpack $archive"; exit 1; }
else
    root=$(cd "$BUNDLE/bundle" 2>/dev/null && pwd) || { echo "error: no bundle in $BUNDLE (run scripts/pack-gpu.sh)"; exit 1; }
fi
server=$root/bin/sentiment-server
parity=$root/bin/parity
for f in "$server" "$parity" "$root/shared/models/minilm-sst2-f16/reference.jsonl" "$root/shared/data/sst2_dev.tsv"; do
    [[ -e $f ]] || { echo "error: the bundle lacks $f"; exit 1; }
done
chmod +x "$server" "$parity" 2>/dev/null
cp "$root/BUNDLE.txt" "$OUT/" 2>/dev/null
head -n 3 "$root/BUNDLE.txt" 2>/dev/null
if command -v sha256sum >/dev/null && [[ -f $root/BUNDLE.txt ]]; then
    if (cd "$root" && grep -E '^[0-9a-f]{64}  ' BUNDLE.txt | sha256sum --quiet -c -); then
        record bundle pass "checksums match"
    else
        record bundle fail "checksum mismatch"
    fi
fi

# The SHARED_DIR the tests expect. minilm-sst2 is the fp16 model with its own references.
shared=$WORK_DIR/shared
rm -rf "$shared" && mkdir -p "$shared/models"
ln -s "$root/shared/fixtures" "$shared/fixtures"
ln -s "$root/shared/data" "$shared/data"
ln -s "$root/shared/models/minilm-sst2-f16" "$shared/models/minilm-sst2-f16"
ln -s "$root/shared/models/minilm-sst2-f16" "$shared/models/minilm-sst2"
model=$shared/models/minilm-sst2-f16

# ---------------------------------------------------------------------------------------------
step "environment"
export LD_LIBRARY_PATH="$CUDA_LIB_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing() { ldd "$1" 2>&1 | grep -c 'not found'; }
if (($(missing "$server") > 0)); then
    # Fall back on the CUDA libraries of the PyTorch wheels (nvidia-* packages), if any.
    extra=$("$PYTHON" - <<'PY' 2>/dev/null
import glob, os, site
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
print(":".join(dirs))
PY
)
    [[ -n $extra ]] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$extra"
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
{
    echo "# ldd $server"
    ldd "$server"
    echo "# ldd $parity"
    ldd "$parity"
} >"$OUT/ldd.txt" 2>&1
grep -E 'libcuda|libcudart|libcublas|libcurand|libnvrtc|not found' "$OUT/ldd.txt" | sort -u
if (($(missing "$server") + $(missing "$parity") > 0)); then
    record libraries fail "unresolved libraries (see ldd.txt)"
else
    record libraries pass "all resolved"
fi
ldd --version 2>&1 | head -n 1
if command -v nvidia-smi >/dev/null; then
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv 2>&1 |
        tee -a "$OUT/nvidia-smi.txt"
else
    echo "no nvidia-smi" | tee "$OUT/nvidia-smi.txt"
fi
"$server" --version 2>&1

# ---------------------------------------------------------------------------------------------
run_parity() { # DEVICE LOGFILE
    SHARED_DIR=$shared TEST_DEVICE=$1 RUST_BACKTRACE=1 timeout 600 "$parity" parity:: --test-threads=1 >"$2" 2>&1
    local rc=$?
    tail -n 25 "$2"
    local summary
    summary=$(grep -E '^test result:' "$2" | tail -n 1)
    if ((rc == 0)); then
        record "parity ($1)" pass "${summary:-ok}"
    else
        record "parity ($1)" fail "exit $rc ${summary}"
    fi
}
step "parity test on $TEST_DEVICE"
run_parity "$TEST_DEVICE" "$OUT/parity-$TEST_DEVICE.txt"
if [[ $PARITY_CPU == 1 ]]; then
    step "parity test on cpu"
    run_parity cpu "$OUT/parity-cpu.txt"
fi

# ---------------------------------------------------------------------------------------------
# The client: SST-2 validation, one sentence per request, CONCURRENCY threads; stdlib only.
client=$WORK_DIR/sst2_client.py
cat >"$client" <<'PY'
import concurrent.futures, json, math, sys, time, urllib.request

base, tsv, out, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = []
for line in open(tsv, encoding="utf-8"):
    label, _, text = line.rstrip("\n").partition("\t")
    if label.strip().isdigit():
        rows.append((int(label), text))

def get(path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.load(r)

def predict(text):
    body = json.dumps({"inputs": text}).encode()
    req = urllib.request.Request(base + "/predict", body, {"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        ranked = json.load(r)
    return ranked, time.perf_counter() - t

info = get("/info")
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    list(pool.map(predict, [t for _, t in rows[:128]]))  # warm-up: kernels load, shapes cache
    t0 = time.perf_counter()
    answers = list(pool.map(predict, [t for _, t in rows]))
    wall = time.perf_counter() - t0
labels = info.get("labels") or sorted({s["label"] for s in answers[0][0]})  # id order
predictions, finite = [], True
for (gold, text), (ranked, _) in zip(rows, answers):
    scores = {s["label"]: s["score"] for s in ranked}
    if any(v is None or not math.isfinite(v) for v in scores.values()):
        finite = False
    predictions.append({"gold": gold, "label": ranked[0]["label"], "scores": scores})
latencies = sorted(l for _, l in answers)
pos = labels.index("POSITIVE") if "POSITIVE" in labels else len(labels) - 1
correct = sum(1 for p in predictions if (p["label"] == labels[pos]) == (p["gold"] == 1))
result = {
    "info": info,
    "n": len(rows),
    "accuracy": correct / len(rows),
    "finite": finite,
    "wall_s": wall,
    "requests_per_s": len(rows) / wall,
    "latency_ms": {q: 1000 * latencies[min(len(latencies) - 1, int(f * len(latencies)))]
                   for q, f in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
    "concurrency": concurrency,
    "predictions": predictions,
}
json.dump(result, open(out, "w"))
print(json.dumps({k: v for k, v in result.items() if k != "predictions"}))
PY

wait_ready() { # PORT PID
    local deadline=$((SECONDS + 180))
    while ((SECONDS < deadline)); do
        kill -0 "$2" 2>/dev/null || return 1
        "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$1/health" 2>/dev/null && return 0
        sleep 0.5
    done
    return 1
}

port=18300
served=()
for dtype in $DTYPES; do
    step "server --device $SERVE_DEVICE --dtype $dtype"
    port=$((port + 1))
    log=$OUT/server-$dtype.log
    MODEL_DIR=$model DEVICE=$SERVE_DEVICE DTYPE=$dtype HOST=127.0.0.1 PORT=$port LOG_LEVEL=${LOG_LEVEL:-info} \
        "$server" >"$log" 2>&1 &
    pid=$!
    t0=$SECONDS
    if ! wait_ready "$port" "$pid"; then
        tail -n 20 "$log"
        record "serve $dtype" fail "not ready (see server-$dtype.log)"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        continue
    fi
    echo "ready after $((SECONDS - t0))s"
    if timeout 300 "$PYTHON" "$client" "http://127.0.0.1:$port" "$root/shared/data/sst2_dev.tsv" \
        "$OUT/sst2-$dtype.json" "$CONCURRENCY"; then
        served+=("$dtype")
        record "serve $dtype" pass "872 answers"
    else
        record "serve $dtype" fail "client failed (see server-$dtype.log)"
    fi
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null |
        sed "s/^/gpu memory: /"
    # Graceful stop, as on SIGTERM in a container.
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "still running after SIGTERM; killing"; kill -9 "$pid"; }
    wait "$pid" 2>/dev/null
    echo "server exited with status $?"
    tail -n 3 "$log"
done

# ---------------------------------------------------------------------------------------------
step "comparison"
if ((${#served[@]} > 0)); then
    "$PYTHON" - "$OUT" "$MIN_ACCURACY" "${SERVE_DEVICE%%:*}" "${served[@]}" >"$OUT/comparison.txt" <<'PY'
import json, sys
out, min_acc, device, dtypes = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
runs = {d: json.load(open(f"{out}/sst2-{d}.json")) for d in dtypes}
base = runs.get("f32")
table, verdicts = [], []
for d, r in runs.items():
    row = {"dtype": d, "device": r["info"].get("device"), "served_dtype": r["info"].get("dtype"),
           "accuracy": round(r["accuracy"], 4),
           "finite": r["finite"], "requests_per_s": round(r["requests_per_s"], 1),
           "p50_ms": round(r["latency_ms"]["p50"], 2), "p99_ms": round(r["latency_ms"]["p99"], 2)}
    if base is not None and d != "f32":
        pairs = list(zip(r["predictions"], base["predictions"]))
        row["agreement_with_f32"] = round(sum(a["label"] == b["label"] for a, b in pairs) / len(pairs), 4)
        row["max_score_diff_vs_f32"] = round(max(
            abs(a["scores"][k] - b["scores"][k]) for a, b in pairs for k in b["scores"]
            if a["scores"].get(k) is not None and b["scores"][k] is not None), 5)
    ok = r["finite"] and r["accuracy"] >= min_acc and str(row["device"]).startswith(device)
    verdicts.append((d, ok))
    table.append(row)
print(json.dumps({"runs": table, "min_accuracy": min_acc}, indent=1))
for d, ok in verdicts:
    print(f"VERDICT {d} {'pass' if ok else 'fail'}")
PY
    cat "$OUT/comparison.txt"
    while read -r _ dtype verdict; do
        record "sst2 $dtype" "$verdict" "accuracy >= $MIN_ACCURACY, finite scores, on $SERVE_DEVICE"
    done < <(grep '^VERDICT' "$OUT/comparison.txt")
else
    record comparison fail "no server run answered"
fi

# ---------------------------------------------------------------------------------------------
step "summary"
failed=0
{
    printf '%s\n' "${results[@]}"
} >"$OUT/summary.txt"
for line in "${results[@]}"; do
    [[ $line == *"	fail	"* ]] && failed=1
done
column -t -s $'\t' "$OUT/summary.txt" 2>/dev/null || cat "$OUT/summary.txt"
"$PYTHON" - "$OUT/summary.txt" "$failed" >"$OUT/summary.json" <<'PY' 2>/dev/null
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(json.dumps({"passed": sys.argv[2] == "0",
                  "steps": [{"step": s, "result": r, "detail": d} for s, r, d in rows]}, indent=1))
PY
echo "total $((SECONDS - started))s; outputs in $OUT"
# Let tee write the end of the log before exiting.
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null
exit "$failed"
