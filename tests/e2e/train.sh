#!/usr/bin/env bash
# End-to-end test of the training loop through docker-compose.yaml: the train profile writes a
# new version into the repository that api-repository serves, tracked in the tracking profile's
# MLflow, while the API is under load.
#   - builds the training image (scripts/build-train-image.sh; with unchanged requirements only
#     the trainer's layer, if anything, is rebuilt: a few seconds) and checks it: UID 10003, no
#     pip or compilers; training/tests (data formats, version numbering and staging) pass in it;
#     its build context holds the lock and the trainer only (planted .env, secrets, data,
#     weights stay out);
#   - a repository whose model sst2 has version 1 (the tiny random fixture distilbert-tiny);
#     api-repository serves it (poll interval 1 s) under constant load (tests/e2e/train_load.py:
#     4 clients on /v2/models/sst2/infer);
#   - `compose --profile train run train` fine-tunes version 1 for a few steps on a labelled
#     subset of sst2_dev.tsv (mounted read-only) into sst2/2: the server switches to it with
#     0 failed requests (the switch time, from the trainer's rename to the first answer of
#     version 2, is printed);
#   - version 2's answers on the held-back sentences equal the trainer's own PyTorch
#     predictions (its MLflow artifact predictions.jsonl) within 1e-4, scores and logits;
#   - MLflow's REST API holds the run: FINISHED, its parameters, per-epoch metrics, the model
#     directory as an artifact, tagged with version 2; /info shows the run id on version 2;
#   - a second run with the same repository mounted writes version 3 (the next number), and a
#     run with MLflow unreachable fails at once, saying so, and writes nothing.
# Needs IMAGE (scripts/build-image.sh), the MLflow image (scripts/build-mlflow-image.sh; built
# when missing, as tests/e2e/compose.sh does) and POSTGRES_IMAGE. Bounded: 107 s once the
# images exist (2-vCPU Xeon, quiet); the training image takes seconds when current, a cold
# build 12-16 min on a busy 2-vCPU machine (.ci/run starts it in the background:
# scripts/build-train-image.sh says what it costs).
# Host ports: API_REPOSITORY_PORT (18104), MLFLOW_PORT (15100).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
started=$(date +%s)
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-local/postgres:15}
export SENTIMENT_IMAGE=$IMAGE
export MLFLOW_PORT=${MLFLOW_PORT:-15100}
export API_REPOSITORY_PORT=${API_REPOSITORY_PORT:-18104}
export API_REPOSITORY_GRPC_PORT=${API_REPOSITORY_GRPC_PORT:-18105}
export DEFAULT_MODEL=sst2 REPOSITORY_POLL_INTERVAL=1s
unset MODEL_PATH POSTGRES_SECRET_DIR HF_ENDPOINT HF_TOKEN MLFLOW_ALLOWED_HOSTS ADMIN_SECRET_DIR \
    TRAIN_USER TRAIN_MLFLOW_TRACKING_URI MLFLOW_EXPERIMENT_NAME
PROJECT=${COMPOSE_PROJECT:-sentiment-train-e2e-$$}
TMP=$(mktemp -d)
: >"$TMP/empty.env"
export MODEL_REPOSITORY_PATH=$TMP/repo TRAIN_DATA_PATH=$TMP/data
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
compose() { "${COMPOSE[@]}" --env-file "$TMP/empty.env" -p "$PROJECT" --profile tracking --profile repository --profile train "$@"; }
cleanup() {
    touch "$TMP/stop"
    if [ -n "${load_pid:-}" ]; then wait "$load_pid" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then
        compose down -v --remove-orphans >/dev/null 2>&1 || true
        # Written by UID 10003 inside the containers.
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
cid() { compose ps -a -q "$1"; }
ML=http://127.0.0.1:$MLFLOW_PORT
REPO=http://127.0.0.1:$API_REPOSITORY_PORT
mlflow_get() { curl -sfS --max-time 30 "$ML/api/2.0/mlflow/$1"; }
py() { python3 -c "$@"; }

step "training image"
build_started=$(date +%s)
IMAGE=sentiment-train scripts/build-train-image.sh >"$TMP/train-build.log" 2>&1 || { tail -n 40 "$TMP/train-build.log" >&2; fail "scripts/build-train-image.sh failed"; }
ok "built (or found current) in $(($(date +%s) - build_started)) s: $(tail -n1 "$TMP/train-build.log")"
export TRAIN_IMAGE=sentiment-train:latest
expect "training image user" "$(docker image inspect -f '{{.Config.User}}' "$TRAIN_IMAGE")" "10003:10003"
tools=$(docker run --rm --entrypoint sh "$TRAIN_IMAGE" -c 'for t in gcc cc c++ make pip pip3; do command -v $t; done; python3 -c "import pip" 2>/dev/null && echo "pip module"; true')
expect "compilers or pip in the training image" "$tools" ""
# The trainer's data and repository code (training/tests), as the image's user.
docker run --rm --read-only --tmpfs /tmp -v "$PWD/training:/src:ro" --entrypoint python3 "$TRAIN_IMAGE" \
    -m unittest discover -s /src/tests >"$TMP/unit.log" 2>&1 || { cat "$TMP/unit.log" >&2; fail "training/tests failed"; }
ok "training/tests: $(tail -n1 "$TMP/unit.log")"

step "the training build context: the lock and the trainer only (planted secrets, data and weights stay out)"
planted=(training/.env training/secrets/planted.txt training/sentiment_train/.env.local
    training/sentiment_train/model.safetensors training/train.tsv training/wheels/planted.jsonl)
for f in "${planted[@]}"; do
    if [ -e "$f" ]; then fail "$f already exists; refusing to overwrite it"; fi
done
for f in "${planted[@]}"; do mkdir -p "$(dirname "$f")"; echo "PLANTED-$$" >"$f"; done
printf 'FROM local/debian:bookworm-slim\nCOPY . /context\n' >"$TMP/probe.Dockerfile"
probe_status=0
DOCKER_BUILDKIT=0 docker build -q -f "$TMP/probe.Dockerfile" -t sentiment-train-context-probe training >/dev/null 2>&1 || probe_status=$?
rm -f "${planted[@]}"
rmdir training/secrets 2>/dev/null || true
[ "$probe_status" = 0 ] || fail "could not build the context probe"
context=$(docker run --rm --entrypoint find sentiment-train-context-probe /context -type f | sed 's|^/context/||' | LC_ALL=C sort | tr '\n' ' ')
docker rmi sentiment-train-context-probe >/dev/null 2>&1 || true
expect "files in the training build context" "$context" \
    "requirements.txt sentiment_train/__init__.py sentiment_train/__main__.py sentiment_train/cli.py sentiment_train/data.py sentiment_train/repository.py sentiment_train/tracking.py sentiment_train/train.py "

step "MLflow image"
export MLFLOW_IMAGE=${MLFLOW_IMAGE:-$(IMAGE=sentiment-mlflow TAG_ONLY=1 scripts/build-mlflow-image.sh)}
if ! docker image inspect "$MLFLOW_IMAGE" >/dev/null 2>&1; then
    IMAGE=sentiment-mlflow timeout "${MLFLOW_BUILD_TIMEOUT:-1200}" scripts/build-mlflow-image.sh >"$TMP/mlflow-build.log" 2>&1 ||
        { tail -n 40 "$TMP/mlflow-build.log" >&2; fail "scripts/build-mlflow-image.sh failed"; }
fi

step "the repository: sst2 version 1 (a tiny random classifier); the data: a labelled subset of SST-2"
FIXTURE=$SHARED_DIR/fixtures/distilbert-tiny
mkdir -p "$TMP/repo/sst2" "$TMP/data"
cp -RL "$FIXTURE" "$TMP/repo/sst2/1"
rm -f "$TMP/repo/sst2/1/reference.jsonl"
# The trainer (UID 10003) writes versions beside it; the api (UID 10001) only reads.
chown -R 10003:10003 "$TMP/repo/sst2"
chmod -R a+rX "$TMP/repo"
head -n 241 "$SHARED_DIR/data/sst2_dev.tsv" >"$TMP/data/train.tsv"
chmod -R a+rX "$TMP/data"
ok "240 labelled sentences (label<TAB>content)"

step "tracking profile and api-repository"
compose up -d --no-build postgres mlflow api-repository >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "compose up failed"; }
wait_healthy "$(cid api-repository)" 180
wait_healthy "$(cid mlflow)" 240
expect "version served before training" "$(curl -sS --max-time 10 -X POST "$REPO/v2/models/sst2/infer" -H 'content-type: application/json' \
    -d '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}' | py 'import json,sys; print(json.load(sys.stdin)["model_version"])')" 1

step "train under load: version 2 served without a restart, 0 failed requests"
python3 tests/e2e/train_load.py "$REPO" sst2 "$TMP/repo/sst2/2" "$TMP/stop" 4 >"$TMP/load.json" &
load_pid=$!
sleep 3
train_started=$(date +%s)
train_args=(--data /data/train.tsv --base-model /models/sst2/1 --name sst2 --labels "NEGATIVE,POSITIVE"
    --epochs 2 --max-steps 10 --batch-size 32 --validation-fraction 0.25 --predictions 60 --seed 7)
compose run --rm --no-deps -T train "${train_args[@]}" >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log" >&2; fail "the training run failed"; }
ok "trained in $(($(date +%s) - train_started)) s: $(grep -F 'served as' "$TMP/train.log")"
for _ in $(seq 1 60); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$REPO/v2/models/sst2/versions/2/ready")" = 200 ] && break
    sleep 0.5
done
sleep 2  # load on the new version as well
touch "$TMP/stop"
wait "$load_pid"
load_pid=
cat "$TMP/load.json"
read -r sent failed v2 switch < <(py 'import json,sys; s=json.load(open(sys.argv[1]))
print(s["sent"], s["failed"], s["versions"].get("2", 0), s["switch_seconds"])' "$TMP/load.json")
[ "$sent" -gt 50 ] || fail "too little load: $sent requests"
expect "failed requests under load (of $sent)" "$failed" 0
[ "$v2" -gt 0 ] || fail "version 2 never answered"
py 'import sys; assert float(sys.argv[1]) < 10, sys.argv[1]' "$switch" || fail "switch took $switch s (poll interval 1 s)"
ok "switch time: $switch s from the rename to version 2's first answer (poll interval 1 s); $v2 answers from version 2"
expect "api-repository restarts" "$(docker inspect -f '{{.RestartCount}}' "$(cid api-repository)")" 0
LC_ALL=C ls -A "$TMP/repo/sst2" >"$TMP/entries"
expect "repository entries after the run" "$(tr '\n' ' ' <"$TMP/entries")" ".train.lock 1 2 "
expect "version 2's files" "$(LC_ALL=C ls "$TMP/repo/sst2/2" | tr '\n' ' ')" \
    "config.json model.safetensors tokenizer.json tokenizer_config.json training.json "

step "version 2 answers as the trainer's own PyTorch predictions (1e-4)"
run_id=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["mlflow_run_id"])' "$TMP/repo/sst2/2/training.json")
[[ "$run_id" =~ ^[0-9a-f]{32}$ ]] || fail "no MLflow run id in training.json: $run_id"
mlflow_get "runs/get?run_id=$run_id" >"$TMP/run.json" || fail "MLflow has no run $run_id"
artifact_path=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["info"]["artifact_uri"].split("mlflow-artifacts:/", 1)[1])' "$TMP/run.json")
curl -sfS --max-time 30 "$ML/api/2.0/mlflow-artifacts/artifacts/$artifact_path/predictions.jsonl" >"$TMP/predictions.jsonl" ||
    fail "no predictions.jsonl artifact"
python3 - "$REPO" "$TMP/predictions.jsonl" <<'EOF' || fail "version 2 does not answer as the trainer's model"
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(path)]
assert len(rows) == 60, len(rows)
def post(route, body):
    req = urllib.request.Request(base + route, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
worst = 0.0
for start in range(0, len(rows), 16):
    chunk = rows[start:start + 16]
    texts = [r["text"] for r in chunk]
    v2 = post("/v2/models/sst2/versions/2/infer",
              {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]})
    assert v2["model_version"] == "2", v2["model_version"]
    scores = next(o for o in v2["outputs"] if o["name"] == "scores")["data"]
    labels = next(o for o in v2["outputs"] if o["name"] == "label")["data"]
    raw = post("/predict", {"inputs": texts, "raw_scores": True})
    for i, r in enumerate(chunk):
        k = len(r["scores"])
        assert labels[i] == r["label"], (r["text"], labels[i], r["label"])
        for got, want in zip(scores[i * k:(i + 1) * k], r["scores"]):
            worst = max(worst, abs(got - want))
        logits = {item["label"]: item["score"] for item in raw[i]}
        names = ["NEGATIVE", "POSITIVE"]
        for j, want in enumerate(r["logits"]):
            worst = max(worst, abs(logits[names[j]] - want))
assert worst <= 1e-4, f"largest difference {worst}"
print(f"ok: 60 held-back sentences, labels equal, scores and logits within {worst:.1e} of PyTorch")
EOF

step "MLflow holds the run, its metrics and the model directory"
py 'import json,sys; r=json.load(open(sys.argv[1]))["run"]
info, data = r["info"], r["data"]
assert info["status"] == "FINISHED", info["status"]
params = {p["key"]: p["value"] for p in data.get("params", [])}
for k, v in {"base_model": "/models/sst2/1", "epochs": "2", "max_steps": "10", "batch_size": "32", "train_examples": "180", "validation_examples": "60", "labels": "NEGATIVE,POSITIVE", "data_file": "train.tsv"}.items():
    assert params.get(k) == v, (k, params.get(k), v)
tags = {t["key"]: t["value"] for t in data.get("tags", [])}
assert tags.get("model_version") == "2" and tags.get("model_name") == "sst2", tags
metrics = {m["key"] for m in data.get("metrics", [])}
assert {"train_loss", "validation_loss", "validation_accuracy"} <= metrics, metrics' "$TMP/run.json" ||
    fail "the MLflow run lacks its status, parameters, tags or metrics: $(cat "$TMP/run.json")"
ok "run $run_id: FINISHED, parameters, tags model_name=sst2 model_version=2"
mlflow_get "metrics/get-history?run_id=$run_id&metric_key=validation_accuracy" >"$TMP/history.json"
expect "validation_accuracy per epoch (steps)" "$(py 'import json,sys; print(" ".join(str(m["step"]) for m in json.load(open(sys.argv[1]))["metrics"]))' "$TMP/history.json")" "1 2"
mlflow_get "artifacts/list?run_id=$run_id&path=model" >"$TMP/artifacts.json"
expect "model artifact files" "$(py 'import json,sys; print(" ".join(sorted(f["path"] for f in json.load(open(sys.argv[1]))["files"])))' "$TMP/artifacts.json")" \
    "model/config.json model/model.safetensors model/tokenizer.json model/tokenizer_config.json model/training.json"
artifact_sha=$(curl -sfS --max-time 60 "$ML/api/2.0/mlflow-artifacts/artifacts/$artifact_path/model/model.safetensors" | sha256sum | cut -d' ' -f1)
expect "artifact weights = served weights" "$artifact_sha" "$(sha256sum <"$TMP/repo/sst2/2/model.safetensors" | cut -d' ' -f1)"
curl -sS --max-time 10 "$REPO/info" >"$TMP/info.json"
expect "/info: version 2's MLflow run" "$(py 'import json,sys; m=[m for m in json.load(open(sys.argv[1]))["models"] if m["name"]=="sst2"][0]
for v in m["versions"]: print(str(v["version"]) + ":" + (v.get("model") or {}).get("training", {}).get("mlflow_run_id", "-"))' "$TMP/info.json" | tr '\n' ' ')" "2:$run_id "

step "the next run writes version 3; without MLflow a run fails at once and writes nothing"
compose run --rm --no-deps -T train "${train_args[@]}" --epochs 1 --max-steps 2 >"$TMP/train3.log" 2>&1 || { cat "$TMP/train3.log" >&2; fail "the second training run failed"; }
grep -qF "served as sst2 version 3" "$TMP/train3.log" || { cat "$TMP/train3.log" >&2; fail "the second run did not write version 3"; }
ok "version 3 written"
status=0
TRAIN_MLFLOW_TRACKING_URI=http://127.0.0.1:9 compose run --rm --no-deps -T train "${train_args[@]}" >"$TMP/train-off.log" 2>&1 || status=$?
[ "$status" != 0 ] || fail "a run with MLflow unreachable succeeded"
grep -qF "MLflow at http://127.0.0.1:9 does not answer" "$TMP/train-off.log" || { cat "$TMP/train-off.log" >&2; fail "the error does not say MLflow is unreachable"; }
expect "versions after the failed run" "$(LC_ALL=C ls "$TMP/repo/sst2" | tr '\n' ' ')" "1 2 3 "
ok "fails with: $(grep -F 'does not answer' "$TMP/train-off.log" | head -n1)"

compose down -v >/dev/null 2>&1
echo "train e2e: passed in $(($(date +%s) - started)) s"
