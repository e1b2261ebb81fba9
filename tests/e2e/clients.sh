#!/usr/bin/env bash
# The real client libraries from PyPI against the real server: huggingface_hub's
# InferenceClient drives POST / and Triton's tritonclient.http the Open Inference Protocol
# (versions pinned below); their answers are compared with /predict's.
#   SERVER_BIN=path   a prebuilt server (default: `cargo build`, target/debug)
#   VENV=.venv-clients  where the clients are installed (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."

HUGGINGFACE_HUB_VERSION=2.4.0
TRITONCLIENT_VERSION=2.73.0
VENV="${VENV:-.venv-clients}"
export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
MODEL_DIR="${MODEL_DIR:-$SHARED_DIR/models/minilm-sst2}"

want="huggingface_hub==$HUGGINGFACE_HUB_VERSION tritonclient==$TRITONCLIENT_VERSION"
if [ "$(cat "$VENV/.clients" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $want into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "huggingface_hub==$HUGGINGFACE_HUB_VERSION" "tritonclient[http]==$TRITONCLIENT_VERSION"
    echo "$want" > "$VENV/.clients"
fi

if [ -z "${SERVER_BIN:-}" ]; then
    cargo build --quiet --bin sentiment-server
    SERVER_BIN="${CARGO_TARGET_DIR:-target}/debug/sentiment-server"
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

key=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
printf '%s\n' "$key" > "$work/keys"
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
env -u DATABASE_URL -u DATABASE_PASSWORD_FILE -u API_KEY "$SERVER_BIN" --model-dir "$MODEL_DIR" \
    --host 127.0.0.1 --port "$port" --api-key-file "$work/keys" --log-level warn >"$work/log" 2>&1 &
server=$!
for _ in $(seq 120); do
    curl -sf "$base/ready" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.5
done
curl -sf "$base/ready" >/dev/null || { echo "server not ready" >&2; cat "$work/log" >&2; exit 1; }

"$VENV/bin/python" tests/e2e/clients.py "$base" "$key"
