#!/usr/bin/env bash
# Fills .gpu/ with what scripts/gpu-check.sh needs on a GPU machine that has no Rust toolchain
# and no network: the CUDA build of the server, the compiled parity test, and test data from
# ../shared. A device call carries at most 64 MiB, so the result must stay under MAX_MIB.
#
#   scripts/build-cuda.sh && scripts/pack-gpu.sh
#   then, on the GPU machine, from the repository root: bash scripts/gpu-check.sh .gpu
#
# Layout of the bundle (a plain folder when it fits, else .gpu/bundle.tar.xz of the same):
#   bin/sentiment-server, bin/parity          debug info stripped (STRIP=0 keeps it)
#   shared/fixtures/<4 tiny models>           with their PyTorch reference.jsonl
#   shared/models/minilm-sst2-f16/            the fp16 weights (the fp32 ones, 87 MB, do not fit)
#     + reference.jsonl                       PyTorch fp32-compute outputs for *these* weights
#   shared/data/sst2_dev.tsv
#   BUNDLE.txt                                what was packed: git revision, sizes, sha256
#
# Why a reference.jsonl for minilm-sst2-f16: the parity test compares every model with PyTorch
# in fp32, and minilm-sst2's references were computed from the fp32 weights; the fp16 weights
# move the logits by up to ~7e-3, more than the GPU tolerance (1e-3). So the references are
# recomputed here, the same way (transformers, CPU, fp32, the references' own token ids), from
# the fp16 weights upcast to fp32, and gpu-check.sh presents this model as models/minilm-sst2.
# That needs a Python with torch and transformers (REF_PYTHON; scripts/setup-baseline.sh makes
# .venv-bench). The result is cached in $CARGO_TARGET_DIR/gpu-refs/.
#
# Environment (all optional):
#   GPU_DIR=.gpu                  output folder (git-ignored through .git/info/exclude)
#   SHARED_DIR=../shared          the shared models, fixtures and data
#   CARGO_TARGET_DIR=target/cuda  where scripts/build-cuda.sh built
#   MAX_MIB=60                    size budget of the bundle
#   COMPRESS=auto                 auto: xz only when the plain folder is over MAX_MIB; xz; none
#   STRIP=1                       strip debug info from the executables
#   REF_PYTHON=.venv-bench/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

GPU_DIR=${GPU_DIR:-.gpu}
SHARED_DIR=${SHARED_DIR:-../shared}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
MAX_MIB=${MAX_MIB:-60}
COMPRESS=${COMPRESS:-auto}
STRIP=${STRIP:-1}
REF_PYTHON=${REF_PYTHON:-.venv-bench/bin/python}

log() { printf '[pack-gpu] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

manifest=$CARGO_TARGET_DIR/release/cuda-artifacts.txt
[[ -f $manifest ]] || die "no $manifest: run scripts/build-cuda.sh first"
artifact() { awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3 }' "$manifest"; }
server=$(artifact bin sentiment-server)
# The integration tests are one binary (tests/testsuite); the GPU check runs its parity module.
parity=$(artifact test testsuite)
[[ -x $server ]] || die "server binary missing: $server"
[[ -x $parity ]] || die "parity test executable missing (manifest: $manifest)"
for f in "$server" "$parity"; do
    # A stale build would test old code: say so (the build is not redone here).
    if [[ -n $(find src tests Cargo.toml Cargo.lock -newer "$f" -type f -print -quit) ]]; then
        log "warning: sources changed after $f was built; rerun scripts/build-cuda.sh"
    fi
done

model_f16=$SHARED_DIR/models/minilm-sst2-f16
fp32_refs=$SHARED_DIR/models/minilm-sst2/reference.jsonl
for p in "$SHARED_DIR/fixtures" "$model_f16/model.safetensors" "$fp32_refs" "$SHARED_DIR/data/sst2_dev.tsv"; do
    [[ -e $p ]] || die "missing $p (set SHARED_DIR)"
done

# The fp16 model's references (cached; recomputed when the weights or references change).
refs_cache=$CARGO_TARGET_DIR/gpu-refs/minilm-sst2-f16.reference.jsonl
if [[ ! -s $refs_cache || $refs_cache -ot $model_f16/model.safetensors || $refs_cache -ot $fp32_refs ]]; then
    [[ -x $REF_PYTHON ]] || die "no $REF_PYTHON with torch + transformers to compute the fp16 references (set REF_PYTHON)"
    log "computing PyTorch references for minilm-sst2-f16 (fp32 compute, CPU)"
    mkdir -p "$(dirname "$refs_cache")"
    "$REF_PYTHON" - "$model_f16" "$fp32_refs" "$refs_cache.tmp" <<'PY'
import json, sys
import torch
from transformers import AutoModelForSequenceClassification
model_dir, fp32_refs, out = sys.argv[1:4]
torch.set_grad_enabled(False)
# Upcast the fp16 weights: compute exactly as the fp32 references were computed.
model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
labels = model.config.id2label
worst = 0.0
with open(fp32_refs) as src, open(out, "w") as dst:
    for line in src:
        if not line.strip():
            continue
        r = json.loads(line)
        ids = torch.tensor([r["input_ids"]])  # the same token ids: one text at a time, no padding
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                       token_type_ids=torch.zeros_like(ids)).logits[0]
        scores = torch.softmax(logits, -1)
        worst = max(worst, max(abs(a - b) for a, b in zip(logits.tolist(), r["logits"])))
        r.update(logits=logits.tolist(), scores=scores.tolist(),
                 label=labels[int(scores.argmax())])
        dst.write(json.dumps(r) + "\n")
print(f"largest logit change from the fp32 weights: {worst:.2e}", file=sys.stderr)
PY
    mv "$refs_cache.tmp" "$refs_cache"
fi

# Stage the bundle.
mkdir -p "$(dirname "$GPU_DIR")"
rm -rf "$GPU_DIR"
stage=$GPU_DIR/bundle
mkdir -p "$stage/bin" "$stage/shared/models" "$stage/shared/data"
copy_exe() {
    if [[ $STRIP == 1 ]]; then
        strip --strip-debug -o "$2" "$1"
    else
        cp "$1" "$2"
    fi
}
copy_exe "$server" "$stage/bin/sentiment-server"
copy_exe "$parity" "$stage/bin/parity"
cp -r "$SHARED_DIR/fixtures" "$stage/shared/fixtures"
cp -r "$model_f16" "$stage/shared/models/minilm-sst2-f16"
cp "$refs_cache" "$stage/shared/models/minilm-sst2-f16/reference.jsonl"
cp "$SHARED_DIR/data/sst2_dev.tsv" "$stage/shared/data/"
chmod -R u+w "$stage"
{
    echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
    echo "server: $server"
    echo "parity: $parity"
    (cd "$stage" && find . -type f ! -name BUNDLE.txt -printf '%P\n' | sort | xargs sha256sum)
} >"$stage/BUNDLE.txt"

plain=$(du -sb "$stage" | cut -f1)
log "bundle folder: $(mib "$plain") MiB"
budget=$((MAX_MIB * 1048576))
if [[ $COMPRESS == xz || ($COMPRESS == auto && $plain -gt $budget) ]]; then
    log "compressing with xz -9 (a few minutes on 2 cores)"
    # gpu-check.sh unpacks with Python's tarfile when the machine has no xz.
    tar -C "$stage" -cf - . | xz -9 -T0 >"$GPU_DIR/bundle.tar.xz"
    rm -rf "$stage"
fi

total=$(du -sb "$GPU_DIR" | cut -f1)

# The HTTP load generator (benches/load.rs, a CPU program) for scripts/gpu-load.sh.
loadgen=$(find "$repo/target/release/deps" -maxdepth 1 -type f -executable -name 'load-*' -printf '%T@ %p\n' 2>/dev/null |
    sort -n | tail -1 | cut -d' ' -f2-)
if [[ -z $loadgen ]]; then
    log "building the load generator (cargo bench --bench load --no-run)"
    (cd "$repo" && cargo bench --bench load --no-run >&2)
    loadgen=$(find "$repo/target/release/deps" -maxdepth 1 -type f -executable -name 'load-*' | head -1)
fi
strip -o "$GPU_DIR/load" "$loadgen" && xz -9 -f "$GPU_DIR/load"
total=$((total + $(stat -c %s "$GPU_DIR/load.xz")))

# Keep .gpu/ out of git without touching .gitignore (the device tool carries ignored paths
# only when named).
if [[ $GPU_DIR != /* ]]; then
    exclude=$(git rev-parse --git-path info/exclude 2>/dev/null || echo .git/info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qxF "/${GPU_DIR%/}/" "$exclude" 2>/dev/null || echo "/${GPU_DIR%/}/" >>"$exclude"
fi

log "$GPU_DIR: $(mib "$total") MiB (budget $MAX_MIB MiB)"
ls -l "$GPU_DIR" >&2
if ((total > budget)); then
    die "$GPU_DIR is $(mib "$total") MiB, over the $MAX_MIB MiB budget"
fi
echo "$repo/$GPU_DIR"
