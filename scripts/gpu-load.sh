#!/usr/bin/env bash
# HTTP load run of the CUDA build on a GPU machine, after scripts/gpu-check.sh has unpacked the
# bundle. The load generator is benches/load.rs built for the CPU (scripts/pack-gpu.sh puts it
# into .gpu/load.xz); it runs on the same machine as the server.
#
#   bash scripts/gpu-load.sh            # writes $OUT/load.jsonl, GPU utilisation, batch metrics
set -uo pipefail
OUT=${OUT:-$PWD/gpu-load-out}
ROOT=${ROOT:-${TMPDIR:-/tmp}/sentiment-gpu-check/bundle}
DTYPES=${DTYPES:-f16 f32}
SCENARIOS=${SCENARIOS:-256x1,1024x1,64x32}
PORT=${PORT:-18200}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=${CUDA_LIB_DIRS:-/usr/local/cuda/lib64}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
xz -dc .gpu/load.xz > /tmp/sentiment-load && chmod +x /tmp/sentiment-load
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$OUT/gpu-util.csv" 2>&1 &
smi=$!
for dtype in $DTYPES; do
    "$ROOT/bin/sentiment-server" --model-dir "$ROOT/shared/models/minilm-sst2-f16" \
        --device cuda --dtype "$dtype" --host 127.0.0.1 --port "$PORT" \
        --max-batch-size 512 --max-batch-tokens 65536 --max-queue-size 16384 \
        --max-client-batch-size 64 --log-level warn > "$OUT/server-$dtype.log" 2>&1 &
    server=$!
    /tmp/sentiment-load --url "http://127.0.0.1:$PORT" --label "h100-$dtype" \
        --scenarios "$SCENARIOS" --duration "${DURATION:-15s}" --warmup 3s \
        --data "$ROOT/shared/data/sst2_dev.tsv" --out "$OUT/load.jsonl"
    python3 - "$PORT" > "$OUT/metrics-$dtype.txt" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
print("\n".join(l for l in text.splitlines() if "batch_" in l or "inference_duration_seconds_sum" in l or "_count" in l))
PY
    kill -TERM "$server"; wait "$server"
done
kill "$smi" 2>/dev/null
cat "$OUT/load.jsonl"
