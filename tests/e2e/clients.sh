#!/usr/bin/env bash
# The real client libraries from PyPI against the real server: huggingface_hub's
# InferenceClient drives POST /, Triton's tritonclient.http and tritonclient.grpc the Open
# Inference Protocol over HTTP and gRPC (versions pinned below); their answers are compared
# with /predict's. A second server with the NLI fixture answers InferenceClient's
# zero_shot_classification (compared with /zero-shot-classification) and text pairs (plain HTTP
# and both Triton clients, compared with the PyTorch references). A third, with the
# cross-encoder fixture, answers Cohere's SDK on /v1/rerank and both Triton clients' rerank
# inputs (tests/e2e/rerank_clients.py, compared with transformers' references). A fourth, with
# the NER fixture, answers InferenceClient's token_classification and Triton's gRPC client (the
# `entities` output), compared with transformers' pipeline references.
#   SERVER_BIN=path   a prebuilt server (default: `cargo build`, target/debug)
#   VENV=.venv-clients  where the clients are installed (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."

HUGGINGFACE_HUB_VERSION=2.4.0
TRITONCLIENT_VERSION=2.73.0
COHERE_VERSION=7.3.1
VENV="${VENV:-.venv-clients}"
export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
MODEL_DIR="${MODEL_DIR:-$SHARED_DIR/models/minilm-sst2}"
NLI_DIR="${NLI_DIR:-$SHARED_DIR/more-fixtures/bert-tiny-nli}"
RERANK_DIR="${RERANK_DIR:-$SHARED_DIR/more-fixtures/bert-tiny-reranker}"
NER_DIR="${NER_DIR:-$SHARED_DIR/more-fixtures/bert-tiny-ner}"

want="huggingface_hub==$HUGGINGFACE_HUB_VERSION tritonclient[http,grpc]==$TRITONCLIENT_VERSION cohere==$COHERE_VERSION"
if [ "$(cat "$VENV/.clients" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $want into $VENV"
    python3 -m venv "$VENV"
    # Bounded: a stalled index must not hold CI (the three take about a minute).
    timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "huggingface_hub==$HUGGINGFACE_HUB_VERSION" "tritonclient[http,grpc]==$TRITONCLIENT_VERSION" \
        "cohere==$COHERE_VERSION"
    echo "$want" > "$VENV/.clients"
fi

if [ -z "${SERVER_BIN:-}" ]; then
    cargo build --quiet --bin sentiment-server
    SERVER_BIN="${CARGO_TARGET_DIR:-target}/debug/sentiment-server"
fi

work=$(mktemp -d)
servers=()
cleanup() {
    for server in "${servers[@]}"; do
        if kill -0 "$server" 2>/dev/null; then
            kill "$server" 2>/dev/null || true
            wait "$server" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

key=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
printf '%s\n' "$key" > "$work/keys"
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# serve <model dir> <log>: starts a server on free ports; sets base and grpc_address.
serve() {
    local port grpc_port server
    port=$(free_port)
    grpc_port=$(free_port)
    base="http://127.0.0.1:$port"
    grpc_address="127.0.0.1:$grpc_port"
    env -u DATABASE_URL -u DATABASE_PASSWORD_FILE -u API_KEY "$SERVER_BIN" --model-dir "$1" \
        --host 127.0.0.1 --port "$port" --grpc-port "$grpc_port" --api-key-file "$work/keys" --log-level warn >"$2" 2>&1 &
    server=$!
    servers+=("$server")
    for _ in $(seq 120); do
        curl -sf "$base/ready" >/dev/null && break
        kill -0 "$server" 2>/dev/null || { cat "$2" >&2; exit 1; }
        sleep 0.5
    done
    curl -sf "$base/ready" >/dev/null || { echo "server not ready" >&2; cat "$2" >&2; exit 1; }
}
serve "$NLI_DIR" "$work/nli.log"
nli_base=$base nli_grpc=$grpc_address
serve "$RERANK_DIR" "$work/rerank.log"
rerank_base=$base rerank_grpc=$grpc_address
serve "$NER_DIR" "$work/ner.log"
ner_base=$base ner_grpc=$grpc_address
serve "$MODEL_DIR" "$work/log"

"$VENV/bin/python" tests/e2e/clients.py "$base" "$key" "$grpc_address" "$nli_base" "$nli_grpc" \
    "$ner_base" "$ner_grpc"
timeout 120 "$VENV/bin/python" tests/e2e/rerank_clients.py "$rerank_base" "$key" "$rerank_grpc"
