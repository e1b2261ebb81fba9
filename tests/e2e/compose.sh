#!/usr/bin/env bash
# End-to-end test of docker-compose.yaml with the tracking profile (api, postgres, mlflow and the
# one-shot secrets-init and model-init; images built locally), with no manual step:
#   - secrets-init generates the database password into its volume; it shows in no log, /info,
#     `docker inspect` or command line;
#   - model-init downloads the model into its volume (from tests/e2e/hub_mock.py, a stand-in for
#     the Hub: CI has no Internet access) and links it where the api reads it; later it fetches
#     nothing, with the Hub gone; without network it fails saying what to do;
#   - predictions land in PostgreSQL, and the API keeps answering while PostgreSQL restarts, after
#     which the log resumes with every row stored or counted as dropped;
#   - MLflow turns healthy; an experiment, a run, a metric and an artifact made through its REST
#     API land in PostgreSQL's mlflow database and the artifact volume;
#   - `down` (volumes kept) and `up` again: the same password, the predictions and the MLflow
#     experiment are still there; then MODEL_PATH (a host directory) instead of the volume;
#   - the repository profile: admin-secret-init generates api-repository's admin key (shown
#     nowhere, readable by UID 10001 only); the repository routes that change what is served
#     answer 401 without it or with another key, 415 without `Content-Type: application/json`,
#     and 200 with both; inference needs no key. The same key when both containers are made
#     afresh.
# Needs IMAGE (scripts/build-image.sh) and POSTGRES_IMAGE (the official one, or
# IMAGES=postgres scripts/build-base-images.sh on machines without a registry); builds the MLflow
# image (scripts/build-mlflow-image.sh) when the tag of its current sources is missing, in at most
# MLFLOW_BUILD_TIMEOUT seconds. Host ports: API_PORT, API_GRPC_PORT, MLFLOW_PORT,
# API_REPOSITORY_PORT, API_REPOSITORY_GRPC_PORT.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
started=$(date +%s)
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-local/postgres:15}
export SENTIMENT_IMAGE=$IMAGE
export API_PORT=${API_PORT:-18000}
export API_GRPC_PORT=${API_GRPC_PORT:-18001}
export MLFLOW_PORT=${MLFLOW_PORT:-15000}
export API_REPOSITORY_PORT=${API_REPOSITORY_PORT:-18004}
export API_REPOSITORY_GRPC_PORT=${API_REPOSITORY_GRPC_PORT:-18005}
# Served by the stand-in Hub (any id serves the shared model).
export MODEL_ID=e2e/minilm-sst2
unset MODEL_PATH POSTGRES_SECRET_DIR HF_ENDPOINT HF_REVISION HF_TOKEN MLFLOW_ALLOWED_HOSTS \
    ADMIN_SECRET_DIR MODEL_REPOSITORY_PATH DEFAULT_MODEL REPOSITORY_POLL_INTERVAL
PROJECT=${COMPOSE_PROJECT:-sentiment-e2e-$$}
HUB=$PROJECT-hub
TMP=$(mktemp -d)
: >"$TMP/empty.env"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
# An empty env file: a developer's .env does not change what is tested.
compose() { "${COMPOSE[@]}" --env-file "$TMP/empty.env" -p "$PROJECT" --profile tracking "$@"; }
# Every profile this test starts: for ps, down and the repository step (a plain `up` with it
# would start api-repository too).
compose_all() { compose --profile repository "$@"; }
cleanup() {
    # The background model-init run (below), if the test stopped before waiting for it.
    if [ -n "${offline:-}" ]; then wait "$offline" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then
        docker rm -f "$HUB" >/dev/null 2>&1 || true
        compose_all down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
cid() { compose_all ps -a -q "$1"; }
psql_in() { compose exec -T postgres psql -U sentiment -d "$1" -tAc "$2" 2>/dev/null | tr -d '[:space:]'; }
psql_count() { psql_in sentiment "SELECT count(*) FROM predictions"; }
BASE=http://127.0.0.1:$API_PORT
ML=http://127.0.0.1:$MLFLOW_PORT
# mlflow_api <method> <path> [json body]: prints the body; fails on a non-2xx status.
mlflow_api() {
    local out code
    out=$(curl -sS --max-time 30 -X "$1" -H 'content-type: application/json' ${3:+-d "$3"} \
        -w '\n%{http_code}' "$ML/api/2.0/mlflow/$2")
    code=${out##*$'\n'}
    [ "${code:0:1}" = 2 ] || fail "MLflow $1 $2: HTTP $code: ${out%$'\n'*}"
    printf '%s' "${out%$'\n'*}"
}
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
# exited_ok <service> <log text>: the one-shot service exited 0 saying so.
exited_ok() {
    local c
    c=$(cid "$1")
    [ -n "$c" ] || fail "no $1 container"
    expect "$1 exit code" "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$c")" "exited 0"
    grep -qF "$2" <<<"$(docker logs "$c" 2>&1)" || { docker logs "$c" 2>&1 | tail -n 20 >&2; fail "$1 did not say '$2'"; }
    ok "$1: $2"
}

step "MLflow image"
export MLFLOW_IMAGE=${MLFLOW_IMAGE:-$(TAG_ONLY=1 scripts/build-mlflow-image.sh)}
if ! docker image inspect "$MLFLOW_IMAGE" >/dev/null 2>&1; then
    build_started=$(date +%s)
    timeout "${MLFLOW_BUILD_TIMEOUT:-1200}" scripts/build-mlflow-image.sh >"$TMP/mlflow-build.log" 2>&1 || {
        tail -n 40 "$TMP/mlflow-build.log" >&2
        fail "scripts/build-mlflow-image.sh failed or ran over ${MLFLOW_BUILD_TIMEOUT:-1200} s"
    }
    ok "built in $(($(date +%s) - build_started)) s"
fi
expect "mlflow image user" "$(docker image inspect -f '{{.Config.User}}' "$MLFLOW_IMAGE")" "10002:10002"
tools=$(docker run --rm --entrypoint sh "$MLFLOW_IMAGE" -c 'for t in gcc cc c++ make pip pip3; do command -v $t; done; python3 -c "import pip" 2>/dev/null && echo "pip module"; true')
expect "compilers or pip in the mlflow image" "$tools" ""

step "compose up --profile tracking: nothing prepared by hand"
# postgres (and secrets-init) first: that makes the project's network, which the stand-in Hub
# joins before model-init runs. (`up --no-start` would do, but docker-compose 1.29 never returns
# from it with service_completed_successfully conditions.)
compose up -d --no-build postgres >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "compose up postgres failed"; }
network=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | head -n1)
[ -n "$network" ] || fail "no network of project $PROJECT"
docker run -d --name "$HUB" --network "$network" --network-alias hub --no-healthcheck --read-only --cap-drop ALL \
    --user 10002:10002 -v "$MODEL:/model:ro" -v "$PWD/tests/e2e/hub_mock.py:/hub_mock.py:ro" \
    --entrypoint python3 "$MLFLOW_IMAGE" /hub_mock.py /model 8080 >/dev/null
HF_ENDPOINT=http://hub:8080 compose up -d --no-build >>"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "compose up failed"; }
API=$(cid api)
exited_ok secrets-init "generated a random database password"
exited_ok model-init "$MODEL_ID is ready in the model volume"
wait_healthy "$(cid postgres)" 120
wait_healthy "$API" 180
expect "api user" "$(docker exec "$API" id -u)" "10001"
expect "model file as the api sees it" "$(docker exec "$API" sh -c 'readlink /models/model/model.safetensors')" "model/model.safetensors"
# Model-init without network, run beside the rest (its retries take ~15 s): another model id,
# so it must fetch, from an endpoint that refuses connections.
(status=0
    env -u MODEL_PATH "${COMPOSE[@]}" --env-file "$TMP/empty.env" -p "$PROJECT" run --rm --no-deps \
        -e MODEL_ID=e2e/not-here -e HF_ENDPOINT=http://127.0.0.1:9 model-init >"$TMP/offline.log" 2>&1 || status=$?
    echo "exit $status" >>"$TMP/offline.log") &
offline=$!

step "the generated database password"
password=$(compose exec -T postgres cat /run/secrets/postgres/postgres_password)
[[ "$password" =~ ^[A-Za-z0-9]{32}$ ]] || fail "the password is not 32 letters and digits (${#password} characters)"
ok "32 random letters and digits"
expect "password file owner and mode" "$(compose exec -T postgres stat -c '%u %a' /run/secrets/postgres/postgres_password | tr -d '\r')" "0 444"
for _ in $(seq 1 40); do [ "$(metric "$BASE" sentiment_prediction_log_connected)" = 1 ] && break; sleep 0.5; done
expect "log connected (the api got in with it)" "$(metric "$BASE" sentiment_prediction_log_connected)" 1
# Read whole first: with grep -q under pipefail, a match could kill the writer with SIGPIPE and
# turn the pipeline false, hiding the leak.
leaks() {
    local where=$1 text=$2
    if grep -qF "$password" <<<"$text"; then fail "the password is in $where"; fi
    ok "password not in $where"
}
leaks_everywhere() {
    local c
    leaks "the logs of every service" "$(compose logs --no-color 2>&1)"
    leaks "/info" "$(curl -sS --max-time 10 "$BASE/info")"
    for c in $(compose ps -a -q); do
        leaks "docker inspect $(docker inspect -f '{{.Name}}' "$c")" "$(docker inspect "$c")"
    done
    for c in $(compose ps -q); do
        [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ] || continue
        leaks "the command lines in $(docker inspect -f '{{.Name}}' "$c")" "$(docker top "$c" -eo args 2>&1)"
    done
}
leaks_everywhere

step "predictions land in PostgreSQL"
sent=0
for text in "a wonderful, heartfelt film" "a tedious mess" "the best thing I have seen this year"; do
    read -r code _ < <(predict "$BASE" "{\"inputs\": \"$text\"}")
    expect "status" "$code" 200
    sent=$((sent + 1))
done
for _ in $(seq 1 60); do [ "$(psql_count)" = "$sent" ] && break; sleep 0.5; done
expect "rows in predictions" "$(psql_count)" "$sent"
labels=$(psql_in sentiment "SELECT string_agg(label, ',' ORDER BY created_at) FROM predictions")
expect "logged labels" "$labels" "POSITIVE,NEGATIVE,POSITIVE"

step "MLflow on PostgreSQL"
MLFLOW=$(cid mlflow)
wait_healthy "$MLFLOW" 240
expect "mlflow user" "$(docker exec "$MLFLOW" id -u)" "10002"
expect "mlflow read-only root" "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$MLFLOW")" "true"
experiment=$(mlflow_api POST experiments/create '{"name": "compose-e2e"}' | json experiment_id)
run=$(mlflow_api POST runs/create "{\"experiment_id\": \"$experiment\", \"run_name\": \"e2e\", \"start_time\": $(date +%s)000}" | json run.info.run_id)
mlflow_api POST runs/log-metric "{\"run_id\": \"$run\", \"key\": \"accuracy\", \"value\": 0.8968, \"timestamp\": $(date +%s)000, \"step\": 0}" >/dev/null
ok "experiment $experiment, run $run, metric logged"
expect "experiment in PostgreSQL" "$(psql_in mlflow "SELECT name FROM experiments WHERE experiment_id = $experiment")" "compose-e2e"
expect "metric in PostgreSQL" "$(psql_in mlflow "SELECT value FROM metrics WHERE run_uuid = '$run' AND key = 'accuracy'")" "0.8968"
code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -X PUT --data-binary 'hello from the e2e test' \
    "$ML/api/2.0/mlflow-artifacts/artifacts/$experiment/$run/artifacts/hello.txt")
expect "artifact upload" "$code" 200
expect "artifact on the volume" "$(docker exec "$MLFLOW" cat "/mlflow/artifacts/$experiment/$run/artifacts/hello.txt")" "hello from the e2e test"
# Other containers reach it by service name (MLflow checks the Host header).
docker exec "$MLFLOW" python3 -c 'import urllib.request; urllib.request.urlopen("http://mlflow:5000/api/2.0/mlflow/experiments/get-by-name?experiment_name=compose-e2e", timeout=10)' ||
    fail "MLflow refused a request to http://mlflow:5000"
ok "answers as http://mlflow:5000 inside the network"
leaks "MLflow's logs" "$(docker logs "$MLFLOW" 2>&1)"

step "PostgreSQL restarts under traffic"
failures=0
pg_started=$(docker inspect -f '{{.State.StartedAt}}' "$(cid postgres)")
( sleep 1; compose restart -t 10 postgres >/dev/null 2>&1 ) &
restarter=$!
end=$(( $(date +%s) + 12 ))
while [ "$(date +%s)" -lt "$end" ]; do
    read -r code _ < <(predict "$BASE" '{"inputs": "still answering while the database restarts"}')
    sent=$((sent + 1))
    [ "$code" = 200 ] || failures=$((failures + 1))
done
wait "$restarter"
expect "failed requests during the restart (of $sent)" "$failures" 0
wait_healthy "$(cid postgres)" 60
[ "$(docker inspect -f '{{.State.StartedAt}}' "$(cid postgres)")" != "$pg_started" ] ||
    fail "postgres did not restart"
ok "postgres restarted"
for _ in $(seq 1 5); do predict "$BASE" '{"inputs": "after the restart"}' >/dev/null; sent=$((sent + 1)); done
stored=0 dropped=0
for _ in $(seq 1 120); do
    stored=$(psql_count || echo 0)
    dropped=$(metric "$BASE" sentiment_prediction_log_dropped_rows_total)
    [ "$((stored + ${dropped%.*}))" = "$sent" ] && break
    sleep 0.5
done
expect "rows stored + dropped (stored $stored, dropped $dropped)" "$((stored + ${dropped%.*}))" "$sent"
[ "$stored" -gt 3 ] || fail "nothing was logged after the restart"
expect "log connected" "$(metric "$BASE" sentiment_prediction_log_connected)" 1
expect "api restarts" "$(docker inspect -f '{{.RestartCount}}' "$API")" 0

step "model-init without network"
wait "$offline" || true
offline_log=$(cat "$TMP/offline.log")
grep -q '^exit [1-9]' <<<"$offline_log" || { echo "$offline_log" >&2; fail "model-init succeeded without network"; }
grep -qF "without network access, set MODEL_PATH" <<<"$offline_log" || { echo "$offline_log" >&2; fail "model-init's error does not say what to do"; }
ok "fails, and says: $(grep -F 'without network access' <<<"$offline_log" | head -n1)"

step "down (volumes kept), up again with the Hub gone"
docker rm -f "$HUB" >/dev/null
compose down >/dev/null 2>&1
expect "containers left after down" "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)" 0
HF_ENDPOINT=http://hub:8080 compose up -d --no-build >"$TMP/up2.log" 2>&1 || { cat "$TMP/up2.log" >&2; fail "compose up (again) failed"; }
API=$(cid api)
exited_ok secrets-init "database password present; kept"
exited_ok model-init "$MODEL_ID is in the model volume; nothing to fetch"
wait_healthy "$(cid postgres)" 120
wait_healthy "$API" 180
[ "$(compose exec -T postgres cat /run/secrets/postgres/postgres_password)" = "$password" ] ||
    fail "the password changed"
ok "the same password"
expect "predictions kept" "$(psql_count)" "$stored"
read -r code _ < <(predict "$BASE" '{"inputs": "back again"}')
expect "status" "$code" 200
for _ in $(seq 1 60); do [ "$(psql_count)" = "$((stored + 1))" ] && break; sleep 0.5; done
expect "rows after the new prediction" "$(psql_count)" "$((stored + 1))"
wait_healthy "$(cid mlflow)" 240
expect "MLflow experiment kept" "$(mlflow_api GET 'experiments/get-by-name?experiment_name=compose-e2e' | json experiment.experiment_id)" "$experiment"
leaks_everywhere

step "MODEL_PATH: a host directory instead of the model volume"
MODEL_PATH=$MODEL compose up -d --no-build >"$TMP/up3.log" 2>&1 || { cat "$TMP/up3.log" >&2; fail "compose up with MODEL_PATH failed"; }
API=$(cid api)
exited_ok model-init "MODEL_PATH ($MODEL) is mounted; nothing to fetch"
wait_healthy "$API" 180
expect "model file as the api sees it (not a link)" "$(docker exec "$API" sh -c 'test -f /models/model/model.safetensors && ! test -L /models/model/model.safetensors && echo file')" "file"
read -r code _ < <(predict "$BASE" '{"inputs": "served from the host directory"}')
expect "status" "$code" 200
for _ in $(seq 1 60); do [ "$(psql_count)" = "$((stored + 2))" ] && break; sleep 0.5; done
expect "rows" "$(psql_count)" "$((stored + 2))"

step "repository profile: api-repository and its generated admin key"
REPO=http://127.0.0.1:$API_REPOSITORY_PORT
mkdir -p "$TMP/repo/sst2"
cp -RL "$MODEL" "$TMP/repo/sst2/1"
chmod -R a+rX "$TMP/repo"
repo_up() {
    MODEL_REPOSITORY_PATH=$TMP/repo DEFAULT_MODEL=sst2 compose_all up -d --no-build api-repository >"$TMP/up-repo.log" 2>&1 ||
        { cat "$TMP/up-repo.log" >&2; fail "compose up api-repository failed"; }
}
repo_up
REPO_API=$(cid api-repository)
exited_ok admin-secret-init "generated a random admin key"
wait_healthy "$REPO_API" 180
admin_key=$(docker exec "$REPO_API" cat /run/secrets/admin/admin_key)
[[ "$admin_key" =~ ^[A-Za-z0-9]{32}$ ]] || fail "the admin key is not 32 letters and digits (${#admin_key} characters)"
ok "admin key: 32 random letters and digits"
expect "admin key file owner and mode" "$(docker exec "$REPO_API" stat -c '%u:%g %a' /run/secrets/admin/admin_key)" "10001:10001 400"
admin_key_leaks() {
    local c
    if grep -qF "$admin_key" <<<"$(compose_all logs --no-color 2>&1)"; then fail "the admin key is in the logs"; fi
    if grep -qF "$admin_key" <<<"$(curl -sS --max-time 10 "$REPO/info")"; then fail "the admin key is in /info"; fi
    for c in "$(cid admin-secret-init)" "$REPO_API"; do
        if grep -qF "$admin_key" <<<"$(docker inspect "$c")"; then fail "the admin key is in docker inspect $c"; fi
    done
    if grep -qF "$admin_key" <<<"$(docker top "$REPO_API" -eo args 2>&1)"; then fail "the admin key is in api-repository's command lines"; fi
    ok "admin key not in the logs, /info, docker inspect or command lines"
}
admin_key_leaks
# repo_post <path> <content type> [key]: POST with an empty body; prints the status (the body
# goes to $TMP/repo.out).
repo_post() {
    local headers=(-H "content-type: $2")
    if [ -n "${3:-}" ]; then headers+=(-H "authorization: Bearer $3"); fi
    curl -sS --max-time 120 -o "$TMP/repo.out" -w '%{http_code}' -X POST "${headers[@]}" --data-binary '' "$REPO$1"
}
for route in /v2/repository/index /v2/repository/models/sst2/load; do
    expect "POST $route without a key" "$(repo_post "$route" application/json)" 401
    expect "POST $route with another key" "$(repo_post "$route" application/json "not-the-admin-key-0123456789abcdef")" 401
    expect "POST $route as text/plain, with the key" "$(repo_post "$route" text/plain "$admin_key")" 415
done
expect "POST /v2/repository/index with the key" "$(repo_post /v2/repository/index application/json "$admin_key")" 200
python3 -c 'import json,sys; index=json.load(open(sys.argv[1]))
assert {"name": "sst2", "version": "1", "state": "READY"} in index, index' "$TMP/repo.out" ||
    fail "sst2 version 1 is not READY in the index: $(cat "$TMP/repo.out")"
ok "the index lists sst2 version 1 READY"
expect "POST /v2/repository/models/sst2/load with the key" "$(repo_post /v2/repository/models/sst2/load application/json "$admin_key")" 200
read -r code _ < <(predict "$REPO" '{"inputs": "served from the repository, no key needed"}')
expect "predict on api-repository, no key" "$code" 200
# Both containers made afresh (the volume kept): the same key, told so.
compose_all stop api-repository >/dev/null 2>&1
compose_all rm -f api-repository admin-secret-init >/dev/null 2>&1
repo_up
REPO_API=$(cid api-repository)
exited_ok admin-secret-init "admin key present; kept"
wait_healthy "$REPO_API" 180
[ "$(docker exec "$REPO_API" cat /run/secrets/admin/admin_key)" = "$admin_key" ] || fail "the admin key changed"
ok "the same admin key"
expect "POST /v2/repository/index with the key, after the restart" "$(repo_post /v2/repository/index application/json "$admin_key")" 200
admin_key_leaks

step "compose down -v"
compose_all down -v >/dev/null 2>&1
expect "containers left" "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)" 0
expect "volumes left" "$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)" 0
echo "compose e2e: passed in $(($(date +%s) - started)) s"
