#!/usr/bin/env bash
# API contract check: starts the real server on 127.0.0.1 with a tiny fixture model and runs
# schemathesis against its /openapi.json. Fails on any 5xx, any response whose status, content
# type or body the document does not declare.
#   SCHEMATHESIS_MAX_EXAMPLES=50   test cases per operation and phase (default 50)
#   SCHEMATHESIS_SEED=N            reproduce a run (the seed is printed at the start)
#   SERVER_BIN=path                a prebuilt server (default: `cargo build`, target/debug)
#   MODEL_DIR=dir                  the model to serve (default $SHARED_DIR/fixtures/bert-tiny-3class)
#   VENV=.venv-ci                  where schemathesis is installed (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
SEED="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"
VENV="${VENV:-.venv-ci}"
export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
MODEL_DIR="${MODEL_DIR:-$SHARED_DIR/fixtures/bert-tiny-3class}"
if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "error: no model at $MODEL_DIR (set SHARED_DIR or MODEL_DIR)" >&2
    exit 1
fi

if ! grep -qF "$SCHEMATHESIS_VERSION" <<<"$("$VENV/bin/schemathesis" --version 2>/dev/null)"; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
VENV=$(cd "$VENV" && pwd)

if [ -z "${SERVER_BIN:-}" ]; then
    echo "==> building the server"
    cargo build --quiet --bin sentiment-server
    SERVER_BIN="${CARGO_TARGET_DIR:-target}/debug/sentiment-server"
fi

port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
work=$(mktemp -d)
log="$work/server.log"
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
show_log() {
    echo "--- server log ($log), last 100 lines:" >&2
    tail -n 100 "$log" >&2 || true
}

echo "==> starting $SERVER_BIN on $base with $MODEL_DIR"
# No prediction log: the check is about the HTTP contract, not the database.
env -u DATABASE_URL -u DATABASE_PASSWORD_FILE "$SERVER_BIN" \
    --model-dir "$MODEL_DIR" --host 127.0.0.1 --port "$port" --log-level warn >"$log" 2>&1 &
server=$!

ready() {
    "$VENV/bin/python" - "$base/ready" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
for _ in $(seq 1 120); do
    if ready; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "error: the server exited before it was ready" >&2
        show_log
        exit 1
    fi
    sleep 0.5
done
if ! ready; then
    echo "error: $base/ready did not answer 200 within 60s" >&2
    show_log
    exit 1
fi

# The /v2/models/{name}[/versions/{version}] routes answer 404 for any other model: name the
# served one, or the tests never get past the path.
model=$("$VENV/bin/python" -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["model_id"])' "$base/info")
cat >"$work/schemathesis.toml" <<EOF
[parameters]
"path.name" = "$model"
"path.version" = "1"
EOF

echo "==> schemathesis $SCHEMATHESIS_VERSION: $MAX_EXAMPLES examples per operation, seed $SEED, model $model"
status=0
# From the temporary directory: schemathesis and hypothesis leave their state (.schemathesis/,
# .hypothesis/) in the working directory.
(cd "$work" && "$VENV/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 2 \
    --request-timeout 30 \
    --generation-database none \
    --continue-on-failure \
    --no-color) || status=$?

if [ "$status" -ne 0 ]; then
    echo "error: schemathesis found failures (exit $status); rerun with SCHEMATHESIS_SEED=$SEED" >&2
    show_log
    exit "$status"
fi
if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server died during the run" >&2
    show_log
    exit 1
fi
echo "==> schemathesis: no failures"
