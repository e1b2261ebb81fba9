#!/usr/bin/env bash
# End-to-end test of the real CPU image: non-root, read-only root filesystem, model mounted
# read-only, HEALTHCHECK turns healthy, /predict answers as PyTorch does, gRPC answers on the
# image's port 8001 (with tritonclient.grpc from .venv-clients, which tests/e2e/clients.sh
# makes; reported as not run without it), and `docker stop` answers in-flight requests and
# exits 0. Needs the image (scripts/build-image.sh) and ../shared.
source "$(dirname "$0")/lib.sh"
NAME=sentiment-e2e-$$
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
TMP=$(mktemp -d)

step "image configuration"
expect "image user" "$(docker image inspect -f '{{.Config.User}}' "$IMAGE")" "10001:10001"
expect "healthcheck" "$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")" '["CMD","sentiment-server","healthcheck"]'
expect "entrypoint" "$(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")" '["sentiment-server"]'
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
expect "version label" "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")" "$version"
revision=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$IMAGE")
[[ "$revision" =~ ^[0-9a-f]{40} ]] || fail "revision label '$revision' is not a git sha"
ok "revision label $revision"
tools=$(docker run --rm --entrypoint sh "$IMAGE" -c 'for t in curl wget python3 python; do command -v $t; done; true')
expect "curl, wget or python in the image" "$tools" ""
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
[ "$size" -le 120000000 ] || fail "image is $size bytes, over 120 MB"
ok "image size $((size / 1000000)) MB"

step "run locked down"
docker run -d --name "$NAME" --read-only --cap-drop ALL --security-opt no-new-privileges \
    -p 127.0.0.1::8000 -p 127.0.0.1::8001 -v "$MODEL:/models/model:ro" "$IMAGE" --log-format json \
    --max-queue-wait 30s >/dev/null
# (The drain check below queues 12 x 32 texts at once, about 2 s of work on 2 CPU cores: the
# default 2 s queue bound could refuse some of them with 429 before the stop, which is not what
# this test is about.)
expect "uid inside" "$(docker exec "$NAME" id -u)" "10001"
expect "read-only root" "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$NAME")" "true"
expect "model mount writable" "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/models/model"}}{{.RW}}{{end}}{{end}}' "$NAME")" "false"
if docker exec "$NAME" sh -c ': > /tmp/probe' 2>/dev/null; then fail "wrote to the root filesystem"; fi
ok "writing to /tmp fails (read-only root)"
wait_healthy "$NAME" 120
BASE=http://127.0.0.1:$(host_port "$NAME" 8000)

step "predict"
read -r code body < <(predict "$BASE" "{\"inputs\": $(reference_text)}")
expect "status" "$code" 200
top=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["label"])' "$body")
expect "label of the reference sentence" "$top" "$(reference_label)"
read -r code body < <(predict "$BASE" '{"inputs": ""}')
expect "empty text" "$code" 422

step "gRPC on the image's port 8001"
clients_python="${VENV_CLIENTS:-$(cd "$(dirname "$0")/../.." && pwd)/.venv-clients}/bin/python"
if [ -x "$clients_python" ] && "$clients_python" -c 'import tritonclient.grpc' 2>/dev/null; then
    label=$("$clients_python" - "127.0.0.1:$(host_port "$NAME" 8001)" "$(reference_text)" <<'PY'
import json, sys
import numpy as np
import tritonclient.grpc as triton
client = triton.InferenceServerClient(sys.argv[1])
assert client.is_server_live() and client.is_server_ready()
text = triton.InferInput("text", [1], "BYTES")
text.set_data_from_numpy(np.array([json.loads(sys.argv[2]).encode()], dtype=object))
print(client.infer("model", [text]).as_numpy("label")[0].decode())
PY
)
    expect "gRPC label of the reference sentence" "$label" "$(reference_label)"
else
    echo "NOT RUN: gRPC in the container (no tritonclient.grpc in ${VENV_CLIENTS:-.venv-clients}; tests/e2e/clients.sh makes it)"
fi

step "docker stop answers in-flight requests"
batch=$(python3 -c 'import json; print(json.dumps({"inputs": ["an honest, moving and often very funny film about growing up in a small town %d" % i for i in range(32)]}))')
for i in $(seq 1 12); do
    ( predict "$BASE" "$batch" | cut -d' ' -f1 >"$TMP/$i" ) &
done
sleep 0.5
stop_started=$(date +%s)
docker stop -t 60 "$NAME" >/dev/null
wait
ok "docker stop took $(( $(date +%s) - stop_started )) s"
codes=$(cat "$TMP"/* | sort | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')
expect "answers to the 12 in-flight requests" "$codes" "200 x12 "
expect "exit code" "$(docker inspect -f '{{.State.ExitCode}}' "$NAME")" "0"
# Read whole, then searched: `docker logs | grep -q` under pipefail fails whenever grep's early
# exit kills docker with SIGPIPE, which made this check fail at random with the message there.
logs=$(docker logs "$NAME" 2>&1)
if ! grep -q 'all requests answered' <<<"$logs"; then
    # What the server said while stopping: a timeout names the connections still open.
    tail -n 25 <<<"$logs" >&2
    fail "no drain message in the logs"
fi
ok "drained before exit"
echo "container e2e: passed"
