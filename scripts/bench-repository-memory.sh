#!/usr/bin/env bash
# Memory of one process serving N models from a repository against N processes serving one
# model each (BENCHMARKS.md, issue 17): the models are N full copies of one model directory, so
# nothing is shared through the page cache that separate models would not share either.
#
#   scripts/bench-repository-memory.sh [MODEL_DIR] [N]      # default: minilm-sst2, 5
#
# Needs a release build (cargo build --release). Prints each server's resident set (VmRSS) and
# proportional set (Pss, shared pages divided among the processes that map them) once every
# model is loaded and has answered one request, then a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

model="$(realpath "${1:-../shared/models/minilm-sst2}")"
n="${2:-5}"
bin="$(realpath "${SERVER_BIN:-target/release/sentiment-server}")"
port="${PORT:-18300}"
[ -x "$bin" ] || { echo "error: $bin not built (cargo build --release)" >&2; exit 1; }
[ -f "$model/config.json" ] || { echo "error: no model in $model" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for i in $(seq 1 "$n"); do
    mkdir -p "$work/repo/model$i"
    cp "$model"/config.json "$model"/model.safetensors "$model"/tokenizer*.json "$work/repo/model$i/"
done

wait_ready() { # port
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$1/ready" >/dev/null && return 0
        sleep 0.2
    done
    echo "error: the server on port $1 never became ready" >&2
    exit 1
}

ask() { # port path
    curl -fs -H 'content-type: application/json' -d '{"inputs": "a warm, funny film"}' \
        "http://127.0.0.1:$1$2" >/dev/null
}

mem_mb() { # pid field (VmRSS from status, Pss from smaps_rollup)
    case "$2" in
        rss) awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" ;;
        pss) awk '/^Pss:/ {printf "%.1f", $2 / 1024}' "/proc/$1/smaps_rollup" ;;
    esac
}

# One process, N models.
ACCESS_LOG=0 "$bin" --model-repository "$work/repo" --default-model model1 --ready-when all \
    --port "$port" --log-level warn >"$work/one.log" 2>&1 &
pids+=("$!")
one=$!
wait_ready "$port"
for i in $(seq 1 "$n"); do ask "$port" "/models/model$i/predict"; done
one_rss=$(mem_mb "$one" rss)
one_pss=$(mem_mb "$one" pss)
kill "$one"
wait "$one" 2>/dev/null || true
pids=()

# N processes, one model each.
sum_rss=0
sum_pss=0
for i in $(seq 1 "$n"); do
    ACCESS_LOG=0 "$bin" --model-dir "$work/repo/model$i" --port $((port + i)) --log-level warn \
        >"$work/many-$i.log" 2>&1 &
    pids+=("$!")
done
for i in $(seq 1 "$n"); do
    wait_ready $((port + i))
    ask $((port + i)) /predict
done
for pid in "${pids[@]}"; do
    sum_rss=$(awk -v a="$sum_rss" -v b="$(mem_mb "$pid" rss)" 'BEGIN {printf "%.1f", a + b}')
    sum_pss=$(awk -v a="$sum_pss" -v b="$(mem_mb "$pid" pss)" 'BEGIN {printf "%.1f", a + b}')
done

size=$(du -m "$model/model.safetensors" | cut -f1)
echo "model: $model ($size MB of weights), $n copies; binary: $bin"
echo
echo "| setup | processes | RSS MB | PSS MB | RSS per model MB |"
echo "| --- | --- | --- | --- | --- |"
awk -v n="$n" -v r="$one_rss" -v p="$one_pss" \
    'BEGIN {printf "| one process, %d models (--model-repository) | 1 | %.0f | %.0f | %.0f |\n", n, r, p, r / n}'
awk -v n="$n" -v r="$sum_rss" -v p="$sum_pss" \
    'BEGIN {printf "| %d processes, one model each (--model-dir) | %d | %.0f | %.0f | %.0f |\n", n, n, r, p, r / n}'
