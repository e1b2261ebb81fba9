#!/usr/bin/env bash
# Every workload of BENCHMARKS.md's summary table in one run, ours against the FastAPI +
# transformers baseline on the same machine: PyTorch's matmul rate (the limit), SST-2
# sentences and long reviews on minilm-sst2, the three speed models (DeBERTa-v3, ELECTRA,
# ModernBERT), and rerank. Our servers: f32, int8 and bf16 at `auto` (AMX's tiles where the CPU
# has them), and, on AMX CPUs, int8 and bf16 at `--cpu-kernels avx512` (VNNI, AVX512-BF16) for
# the comparison.
#
#   scripts/bench-every-workload.sh [OUT.jsonl]    # default benches/results/every-workload-<cpu>-<date>.jsonl
#
# Needs: scripts/setup-baseline.sh, then (once) the data and models:
#   .venv-bench/bin/python benches/data/reviews.py
#   .venv-bench/bin/python ../shared/tools/make_speed_models.py ../shared target/speed-models
#   .venv-bench/bin/python benches/baseline/make_cross_encoder.py
# About 20 minutes on 2 vCPUs; run nothing else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

py=.venv-bench/bin/python
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/[^A-Za-z0-9]\+/-/g' | tr 'A-Z' 'a-z')"
out="${1:-benches/results/every-workload-${cpu}-$(date +%F).jsonl}"
for need in target/data/reviews-bench.tsv target/speed-models target/cross-encoder-minilm "$py"; do
    [ -e "$need" ] || { echo "missing $need: see this script's header" >&2; exit 1; }
done

servers="ours,ours-int8,ours-bf16"
if grep -qw amx_int8 /proc/cpuinfo; then
    servers="$servers,ours-avx512-int8,ours-avx512-bf16"
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); servers: $servers,baseline; records: $out"
export ACCESS_LOG=0

echo "== the limit: PyTorch's fp32 matmul rate on each model's shapes, texts/s it allows"
"$py" benches/baseline/limit.py --model-dir ../shared/models/minilm-sst2 --data ../shared/data/sst2_dev.tsv
"$py" benches/baseline/limit.py --model-dir ../shared/models/minilm-sst2 --data target/data/reviews-bench.tsv
for model in deberta-v3-xsmall-like electra-small-like modernbert-12x384-like; do
    "$py" benches/baseline/limit.py --model-dir "target/speed-models/$model" --data ../shared/data/sst2_dev.tsv
done

echo "== SST-2 sentences, minilm-sst2"
cargo bench -q --bench load -- --servers "$servers,baseline" --scenarios 1x1,32x1 \
    --duration 8s --warmup 2s --out "$out"

echo "== long reviews, minilm-sst2"
cargo bench -q --bench load -- --servers "$servers,baseline" \
    --data target/data/reviews-bench.tsv --scenarios 1x1,32x1 --duration 10s --warmup 3s --out "$out"

for model in deberta-v3-xsmall-like electra-small-like modernbert-12x384-like; do
    echo "== SST-2 sentences, $model"
    cargo bench -q --bench load -- --model-dir "target/speed-models/$model" \
        --servers "$servers,baseline" --scenarios 1x1,32x1 --duration 8s --warmup 2s --out "$out"
done

echo "== rerank: one query, 20 passages of ~100 words, 8 clients"
MAX_QUEUE_WAIT=10s cargo bench -q --bench rerank -- --servers "$servers,baseline" \
    --concurrency 8 --passages 20 --words 100 --duration 15s --warmup 3s --out "$out"
