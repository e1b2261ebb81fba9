#!/usr/bin/env bash
# End-to-end test of docker-compose.yaml (api + postgres, images built locally): predictions
# land in the database, and the API keeps answering while PostgreSQL restarts, after which the
# log resumes with every row stored or counted as dropped.
# Needs IMAGE (scripts/build-image.sh) and POSTGRES_IMAGE (the official one, or
# IMAGES=postgres scripts/build-base-images.sh on machines without a registry).
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-local/postgres:15}
export SENTIMENT_IMAGE=$IMAGE
export MODEL_PATH=$MODEL
export API_PORT=${API_PORT:-18000}
PROJECT=sentiment-e2e-$$
TMP=$(mktemp -d)
chmod 700 "$TMP"
head -c 18 /dev/urandom | base64 >"$TMP/postgres_password.txt"
chmod 644 "$TMP/postgres_password.txt"
export POSTGRES_PASSWORD_FILE_HOST=$TMP/postgres_password.txt
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" "$@"; }
cleanup() {
    [ "${KEEP:-0}" = 1 ] || compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
psql_count() { compose exec -T postgres psql -U sentiment -d sentiment -tAc "SELECT count(*) FROM predictions" 2>/dev/null | tr -d '[:space:]'; }
BASE=http://127.0.0.1:$API_PORT

step "compose up"
compose up -d --no-build api postgres
API=$(compose ps -q api)
wait_healthy "$(compose ps -q postgres)" 120
wait_healthy "$API" 180
expect "api user" "$(docker exec "$API" id -u)" "10001"
# Read whole first: with grep -q under pipefail, a match could kill docker logs with SIGPIPE
# and turn the pipeline false, hiding the leak.
api_logs=$(docker logs "$API" 2>&1)
if grep -qF "$(cat "$TMP/postgres_password.txt")" <<<"$api_logs"; then fail "the password is in the API's logs"; fi
ok "password not in the logs"
info=$(curl -sS --max-time 10 "$BASE/info")
case "$info" in *model_id*) ;; *) fail "/info did not answer: $info" ;; esac
if grep -qF "$(cat "$TMP/postgres_password.txt")" <<<"$info"; then fail "the password is in /info"; fi
ok "password not in /info"

step "predictions land in PostgreSQL"
sent=0
for text in "a wonderful, heartfelt film" "a tedious mess" "the best thing I have seen this year"; do
    read -r code _ < <(predict "$BASE" "{\"inputs\": \"$text\"}")
    expect "status" "$code" 200
    sent=$((sent + 1))
done
for _ in $(seq 1 60); do [ "$(psql_count)" = "$sent" ] && break; sleep 0.5; done
expect "rows in predictions" "$(psql_count)" "$sent"
labels=$(compose exec -T postgres psql -U sentiment -d sentiment -tAc "SELECT string_agg(label, ',' ORDER BY created_at) FROM predictions")
expect "logged labels" "$(echo "$labels" | tr -d '[:space:]')" "POSITIVE,NEGATIVE,POSITIVE"

step "PostgreSQL restarts under traffic"
failures=0
pg_started=$(docker inspect -f '{{.State.StartedAt}}' "$(compose ps -q postgres)")
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
wait_healthy "$(compose ps -q postgres)" 60
[ "$(docker inspect -f '{{.State.StartedAt}}' "$(compose ps -q postgres)")" != "$pg_started" ] ||
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

step "compose down"
compose down -v >/dev/null 2>&1
expect "containers left" "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)" 0
echo "compose e2e: passed"
