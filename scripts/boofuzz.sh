#!/usr/bin/env bash
# Protocol fuzzing of the real server: boofuzz (pinned, from PyPI) sends a bounded, seeded sample
# of mutated requests to every route (read from /openapi.json at run time, plus the probes), over
# HTTP/1.1 and h2c, each on a new connection (tests/e2e/http_fuzz.py says what is fuzzed). Fails on
# any 5xx, a case neither answered nor closed within the case time-out, a crash, or GET /live not
# answered 200 within 2 s between cases. Failures, with the exact request, go to $BOOFUZZ_OUT.
#   BOOFUZZ_CASES=8000          cases in all (30% over h2c); about 1.5 minutes on 2 cores
#   BOOFUZZ_MAX_SECONDS=180     stop early (and say so) after this long: cases held open until the
#                               time-out (5 s each) could otherwise run for long
#   BOOFUZZ_SEED=1              which sample of the mutations (the default is fixed: CI repeats it)
#   BOOFUZZ_CASE_TIMEOUT=5      seconds for a case to be answered or closed
#   BOOFUZZ_OUT=target/boofuzz  failures.jsonl, summary.json and the server log
#   SERVER_BIN=path             a prebuilt server (default: `cargo build`, target/debug)
#   MODEL_DIR=dir               the model to serve (default $SHARED_DIR/fixtures/bert-tiny-3class)
#   VENV=.venv-fuzz             where boofuzz is installed (git-ignored)
# boofuzz's web UI is off (nothing listens on its port 26000) and its session database lives in a
# temporary directory removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BOOFUZZ_VERSION=0.4.2
HPACK_VERSION=4.2.0
CASES="${BOOFUZZ_CASES:-8000}"
SEED="${BOOFUZZ_SEED:-1}"
CASE_TIMEOUT="${BOOFUZZ_CASE_TIMEOUT:-5}"
MAX_SECONDS="${BOOFUZZ_MAX_SECONDS:-180}"
OUT="${BOOFUZZ_OUT:-target/boofuzz}"
VENV="${VENV:-.venv-fuzz}"
export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
MODEL_DIR="${MODEL_DIR:-$SHARED_DIR/fixtures/bert-tiny-3class}"
if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "error: no model at $MODEL_DIR (set SHARED_DIR or MODEL_DIR)" >&2
    exit 1
fi

want="boofuzz==$BOOFUZZ_VERSION hpack==$HPACK_VERSION"
if [ "$(cat "$VENV/.boofuzz" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $want into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "boofuzz==$BOOFUZZ_VERSION" "hpack==$HPACK_VERSION"
    echo "$want" >"$VENV/.boofuzz"
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
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log="$OUT/server.log"
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
    echo "--- server log ($log), last 60 lines:" >&2
    tail -n 60 "$log" >&2 || true
}

# Short client time-outs, so that a request the server rightly waits on (a body shorter than its
# Content-Length, say) is closed within the case time-out; an idle time-out where the binary has
# one (h2c streams left open hold their connection otherwise).
extra=()
if "$SERVER_BIN" --help 2>/dev/null | grep -q -- '--idle-timeout'; then
    extra+=(--idle-timeout 3s)
fi
echo "==> starting $SERVER_BIN on $base with $MODEL_DIR ${extra[*]}"
env -u DATABASE_URL -u DATABASE_PASSWORD_FILE -u API_KEY -u API_KEY_FILE "$SERVER_BIN" \
    --model-dir "$MODEL_DIR" --host 127.0.0.1 --port "$port" --log-level warn \
    --header-read-timeout 2s --body-read-timeout 2s "${extra[@]}" >"$log" 2>&1 &
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

echo "==> boofuzz $BOOFUZZ_VERSION: $CASES cases, seed $SEED, case time-out ${CASE_TIMEOUT}s"
status=0
"$VENV/bin/python" tests/e2e/http_fuzz.py --port "$port" --server-pid "$server" --cases "$CASES" \
    --seed "$SEED" --case-timeout "$CASE_TIMEOUT" --max-seconds "$MAX_SECONDS" \
    --work "$work" --out "$OUT" || status=$?

if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server died during the run" >&2
    show_log
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "error: boofuzz found failures (exit $status); each with its request in $OUT/failures.jsonl; rerun with BOOFUZZ_SEED=$SEED" >&2
    show_log
    exit "$status"
fi
echo "==> boofuzz: no failures"
