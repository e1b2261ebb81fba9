# Shared helpers of the end-to-end container tests (sourced).
set -euo pipefail

SHARED_DIR=${SHARED_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
MODEL=$SHARED_DIR/models/minilm-sst2
IMAGE=${IMAGE:-sentiment-server:latest}

step() { printf '\n--- %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }

# expect <what> <actual> <expected>
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; ok "$1 = $3"; }

# POST /predict; prints "<status> <body>".
predict() {
    local base=$1 body=$2
    curl -sS -o /dev/stdout -w ' %{http_code}' -H 'content-type: application/json' \
        --max-time 60 -d "$body" "$base/predict" | awk '{ code = $NF; $NF = ""; print code, $0 }'
}

# metric <base> <name>: value of an unlabelled metric.
metric() {
    curl -sS --max-time 10 "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

# wait_healthy <container> <seconds>: until Docker's HEALTHCHECK says healthy.
wait_healthy() {
    local c=$1 deadline=$(( $(date +%s) + $2 )) status
    while :; do
        status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$c")
        [ "$status" = healthy ] && { ok "$c is healthy"; return 0; }
        [ "$status" = none ] && fail "$c has no HEALTHCHECK"
        [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ] || {
            docker logs "$c" 2>&1 | tail -n 20 >&2; fail "$c exited"; }
        [ "$(date +%s)" -lt "$deadline" ] || { docker logs "$c" 2>&1 | tail -n 20 >&2; fail "$c not healthy after $2 s ($status)"; }
        sleep 1
    done
}

# host_port <container> <container port>
host_port() { docker port "$1" "$2/tcp" | head -n1 | awk -F: '{ print $NF }'; }

# The first reference sentence of the model and its label, for answers checked against PyTorch.
reference_text() { python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print(json.dumps(r["text"]))' "$MODEL/reference.jsonl"; }
reference_label() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["label"])' "$MODEL/reference.jsonl"; }
