#!/usr/bin/env bash
# End-to-end test of scale-out on Docker Swarm (deploy/swarm/stack.yaml): three replicas of the
# image behind the HAProxy service (docker/haproxy), under constant load from this machine
# (tests/e2e/swarm_load.py: SWARM_CONCURRENCY threads on loopback, one request outstanding
# each, for the whole of every phase):
#   (a) rolling update: `docker service update --image` to another tag of the same image:
#       0 failed requests, every task on the new tag;
#   (b) scale 3 -> 1 -> 3: 0 failed requests;
#   (c) one replica's container killed (SIGKILL): the service is back at 3 healthy replicas
#       and 3 in the proxy's rotation; failures at most the requests in flight at the kill,
#       none among requests sent after it; time to recover reported;
#   (d) an update whose new task cannot start (an unknown flag): Swarm rolls it back
#       (failure_action: rollback), 0 failed requests.
# Prints one line of figures per phase (RELIABILITY.md, section 6). Initialises a one-node
# swarm (docker swarm init --advertise-addr 127.0.0.1) when the engine is in none, and leaves it
# at the end only then; removes the stack, its network and the tag it made in any case.
# Needs the image (scripts/build-image.sh), ../shared, python3 and a Debian mirror (the proxy
# image installs HAProxy from Debian's packages).
#
# Environment (all optional): IMAGE (sentiment-server:latest), SWARM_PORT (28000: the proxy's
# host port), SWARM_CONCURRENCY (4), PROXY_IMAGE (default: built here from docker/haproxy on
# PROXY_BASE_IMAGE: local/debian:bookworm-slim when present, else debian:bookworm-slim).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOAD=$ROOT/tests/e2e/swarm_load.py
STACK=sentiment-e2e-swarm-$$
API=${STACK}_api
PROXY=${STACK}_proxy
PORT=${SWARM_PORT:-28000}
CONCURRENCY=${SWARM_CONCURRENCY:-4}
# The proxy image: PROXY_IMAGE as given, else built here and untagged at the end (its layers
# stay as build cache).
BUILD_PROXY=0
[ -n "${PROXY_IMAGE:-}" ] || { PROXY_IMAGE=sentiment-proxy:swarm-e2e-$$; BUILD_PROXY=1; }
UPDATE_TAG=${IMAGE%:*}:swarm-e2e-$$
BASE=http://127.0.0.1:$PORT
TMP=$(mktemp -d)
LOAD_PID=
INITIALISED=0
GWBRIDGE_BEFORE=1
started=$(date +%s)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
    local rc=$? deadline
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
    if [ "$rc" != 0 ] && docker service inspect "$API" >/dev/null 2>&1; then
        docker service ps --no-trunc "$API" "$PROXY" >&2 || true
        docker service logs --raw "$PROXY" 2>&1 | tail -n 20 >&2 || true
    fi
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    # Containers, then the stack's network (removed by stack rm once its tasks are gone).
    deadline=$(( $(date +%s) + 90 ))
    while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] ||
        [ -n "$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "cleanup: stack $STACK still there" >&2; break; }
        sleep 1
    done
    docker network ls -q --filter "label=com.docker.stack.namespace=$STACK" | xargs -r docker network rm >/dev/null 2>&1 || true
    docker rmi "$UPDATE_TAG" >/dev/null 2>&1 || true
    [ "$BUILD_PROXY" = 0 ] || docker rmi --no-prune "$PROXY_IMAGE" >/dev/null 2>&1 || true
    if [ "$INITIALISED" = 1 ]; then
        docker swarm leave --force >/dev/null 2>&1 || echo "cleanup: docker swarm leave failed" >&2
        # The bridge swarm init makes for the tasks' outbound traffic (leave keeps it).
        [ "$GWBRIDGE_BEFORE" = 1 ] || docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# Tasks of service $1 that should run and run (Swarm marks a task running once its
# HEALTHCHECK passes), as "<image> <state>" lines.
running_tasks() {
    docker service ps --filter desired-state=running --format '{{.Image}} {{.CurrentState}}' "$1" |
        awk '$2 == "Running"'
}
# Containers of service $1 that exist at all (draining ones included).
containers_of() { docker ps -q --filter "label=com.docker.swarm.service.name=$1"; }
proxy_container() { containers_of "$PROXY" | head -n1; }
# Replicas in the proxy's rotation: server slots of backend api whose check says UP.
in_rotation() {
    local c
    c=$(proxy_container)
    [ -n "$c" ] || { echo 0; return; }
    docker exec "$c" proxy-get '/stats;csv' 8404 2>/dev/null |
        awk -F, '$1 == "api" && $2 ~ /^api[0-9]+$/ && $18 ~ /^UP/ { n++ } END { print n + 0 }'
}

# converged <n> [image]: n tasks running (all on image, when given), no other container of the
# service left (old and draining ones gone), n replicas in the proxy's rotation.
converged() {
    local n=$1 image=${2:-} tasks
    tasks=$(running_tasks "$API")
    [ "$(grep -c . <<<"$tasks")" = "$n" ] || return 1
    if [ -n "$image" ]; then
        [ -z "$(awk -v i="$image" '$1 != i' <<<"$tasks")" ] || return 1
    fi
    [ "$(containers_of "$API" | grep -c .)" = "$n" ] || return 1
    [ "$(in_rotation)" = "$n" ]
}

# wait_for <seconds> <what> <command...>
wait_for() {
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + seconds ))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not after $seconds s"
        sleep 0.2
    done
}

load_start() {
    python3 "$LOAD" run "$BASE" "$TMP/$1.json" --concurrency "$CONCURRENCY" &
    LOAD_PID=$!
    sleep 2   # steady load before the action
}
# load_stop <phase> [report options]: stop the load, print its figures, set SENT, OK, FAILED ...
load_stop() {
    local phase=$1 line
    shift
    sleep 2   # and after it
    kill -INT "$LOAD_PID"
    wait "$LOAD_PID" || fail "load generator of phase $phase failed"
    LOAD_PID=
    python3 "$LOAD" report "$TMP/$phase.json" "$phase" "$@" >"$TMP/$phase.env" 2>"$TMP/$phase.line"
    # shellcheck disable=SC1090  # KEY=<integer> lines written by swarm_load.py report
    source "$TMP/$phase.env"
    line=$(cat "$TMP/$phase.line")
    echo "$line"
    FIGURES+=("$line")
}
# The proxy's log since the last call: HAProxy logs only the requests that failed or were
# retried (option dontlog-normal). Prints up to 10 of them; sets RETRIED (requests the proxy
# sent again: the field actconn/feconn/beconn/srv_conn/retries ends in N > 0, +N when to
# another replica) and LOGGED (all logged requests).
PROXY_LOG_SEEN=0
proxy_log_news() {
    local log news
    log=$(docker service logs --raw "$PROXY" 2>/dev/null | grep ' "POST ' || true)
    news=$(tail -n +$((PROXY_LOG_SEEN + 1)) <<<"$log" | grep . || true)
    PROXY_LOG_SEEN=$(grep -c . <<<"$log" || true)
    LOGGED=$(grep -c . <<<"$news" || true)
    # (The timers Th/Tw/Tc/Tr/Ta come first and have the same shape: the last such field counts.)
    RETRIED=$(awk '{ c = ""; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+\/[0-9]+\/[0-9]+\/\+?[0-9]+$/) c = $i
                     n = split(c, f, "/"); if (n == 5 && f[5] + 0 > 0) r++ } END { print r + 0 }' <<<"$news")
    [ -z "$news" ] || head -n 10 <<<"$news"
    ok "proxy: $RETRIED requests retried, $LOGGED logged (failed or retried)"
}

FIGURES=()

step "swarm"
case "$(docker info --format '{{.Swarm.LocalNodeState}}')" in
    active)
        [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] ||
            fail "this engine is in a swarm but not a manager"
        ok "engine already in a swarm (left as it is at the end)" ;;
    inactive)
        GWBRIDGE_BEFORE=0
        docker network inspect docker_gwbridge >/dev/null 2>&1 && GWBRIDGE_BEFORE=1
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null
        INITIALISED=1
        ok "docker swarm init --advertise-addr 127.0.0.1 (left at the end)" ;;
    *) fail "swarm state $(docker info --format '{{.Swarm.LocalNodeState}}')" ;;
esac

step "proxy image (HAProxy from Debian's packages)"
if [ "$BUILD_PROXY" = 1 ]; then
    base=${PROXY_BASE_IMAGE:-}
    if [ -z "$base" ]; then
        if docker image inspect local/debian:bookworm-slim >/dev/null 2>&1; then
            base=local/debian:bookworm-slim
        else
            base=debian:bookworm-slim
        fi
    fi
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$PROXY_IMAGE" \
        "$ROOT/docker/haproxy" >/dev/null 2>"$TMP/proxy-build.log" || {
        cat "$TMP/proxy-build.log" >&2; fail "proxy image build"; }
    ok "built $PROXY_IMAGE on $base"
fi
ok "$PROXY_IMAGE: $(docker run --rm --entrypoint haproxy "$PROXY_IMAGE" -v | head -n1)"
expect "proxy image user" "$(docker image inspect -f '{{.Config.User}}' "$PROXY_IMAGE")" "10080:10080"

step "deploy the stack (3 replicas, dnsrr, proxy on host port $PORT)"
docker image inspect "$IMAGE" >/dev/null || fail "no image $IMAGE (scripts/build-image.sh)"
deploy_started=$(now)
MODEL_PATH=$MODEL SENTIMENT_IMAGE=$IMAGE PROXY_IMAGE=$PROXY_IMAGE PROXY_PORT=$PORT \
    docker stack deploy --resolve-image never -c "$ROOT/deploy/swarm/stack.yaml" "$STACK" >/dev/null
wait_for 180 "3 replicas running and in the proxy's rotation" converged 3 "$IMAGE"
expect "proxy ready" "$(curl -sS --max-time 5 "$BASE/proxy/ready")" ok
read -r code body < <(predict "$BASE" "{\"inputs\": $(reference_text)}")
expect "status through the proxy" "$code" 200
top=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["label"])' "$body")
expect "label of the reference sentence" "$top" "$(reference_label)"
expect "api endpoint mode" "$(docker service inspect -f '{{.Spec.EndpointSpec.Mode}}' "$API")" dnsrr
expect "api read-only root" "$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.ReadOnly}}' "$API")" true
expect "api user" "$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.User}}' "$API")" 10001:10001
expect "update order" "$(docker service inspect -f '{{.Spec.UpdateConfig.Order}}' "$API")" start-first
ok "deployed and converged in $(since "$deploy_started") s"
proxy_log_news >/dev/null

step "(a) rolling update to another tag under load"
docker tag "$IMAGE" "$UPDATE_TAG"
load_start update
t0=$(now)
docker service update --detach --no-resolve-image --image "$UPDATE_TAG" "$API" >/dev/null
update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$API"; }
update_done() {
    local s
    s=$(update_state)
    case "$s" in
        completed) return 0 ;;
        rollback_*|paused) fail "the update ended '$s': $(docker service inspect -f '{{.UpdateStatus.Message}}' "$API")" ;;
    esac
    return 1
}
wait_for 180 "update completed" update_done
wait_for 60 "3 replicas on $UPDATE_TAG in rotation" converged 3 "$UPDATE_TAG"
update_seconds=$(since "$t0")
load_stop update
proxy_log_news
expect "failed requests during the update" "$FAILED" 0
[ "$SENT" -gt 0 ] || fail "no requests sent"
ok "update completed, 3 tasks on $UPDATE_TAG, in $update_seconds s"
FIGURES+=("update: docker service update --image to 3 replicas on the new tag in rotation: $update_seconds s; $RETRIED requests retried by the proxy")

step "(b) scale 3 -> 1 -> 3 under load"
load_start scale
t0=$(now)
docker service scale --detach "$API=1" >/dev/null
wait_for 120 "1 replica" converged 1
down_seconds=$(since "$t0")
t1=$(now)
docker service scale --detach "$API=3" >/dev/null
wait_for 180 "3 replicas" converged 3
up_seconds=$(since "$t1")
load_stop scale
proxy_log_news
expect "failed requests while scaling" "$FAILED" 0
FIGURES+=("scale: 3 -> 1 (two replicas drained and gone) in $down_seconds s; 1 -> 3 (both in rotation) in $up_seconds s; $RETRIED requests retried by the proxy")

step "(c) one replica killed (SIGKILL) under load"
load_start kill
victim=$(containers_of "$API" | head -n1)
kill_sent=$(now)
docker kill "$victim" >/dev/null
wait_for 10 "killed container stopped" test "$(docker inspect -f '{{.State.Running}}' "$victim")" = false
# It died between kill_sent and when the engine recorded its exit (the same clock as the load
# generator's).
died=$(date -d "$(docker inspect -f '{{.State.FinishedAt}}' "$victim")" +%s.%N)
ok "killed container $victim: exit code $(docker inspect -f '{{.State.ExitCode}}' "$victim")"
swarm_back() { [ "$(running_tasks "$API" | grep -c .)" = 3 ] && [[ "$(containers_of "$API")" != *"$victim"* ]]; }
wait_for 180 "3 replicas running again" swarm_back
swarm_seconds=$(since "$kill_sent")
wait_for 60 "3 replicas in the proxy's rotation again" converged 3
rotation_seconds=$(since "$kill_sent")
load_stop kill --kill-window "$kill_sent" "$died"
proxy_log_news
# The bound: every load thread has one request outstanding at a time, so at most
# SWARM_CONCURRENCY requests are outstanding at any instant, on all replicas together, and the
# killed replica's in-flight requests are among them: only those may fail, so every failure
# must be of a request that may have been outstanding when it died (sent before the engine saw
# it dead, not answered before the kill was sent), and there can be at most
# SWARM_CONCURRENCY. A request sent after it died must not fail: the proxy sends a request whose
# connection was refused or closed without an answer to another replica, and its checks take
# the dead one out of rotation within a second. (In practice the proxy retries the in-flight
# ones too, and nothing fails; a proxy without retries fails ~10, mostly sent after the kill.)
[ "$IN_FLIGHT_AT_KILL" -le "$CONCURRENCY" ] || fail "$IN_FLIGHT_AT_KILL in flight, above the concurrency"
expect "failed requests that were not in flight when the replica died" "$((FAILED - FAILED_IN_FLIGHT))" 0
[ "$FAILED" -le "$CONCURRENCY" ] || fail "$FAILED failed, more than the $CONCURRENCY that can be in flight"
ok "$FAILED failed; $IN_FLIGHT_AT_KILL requests in flight at the kill (bound: concurrency $CONCURRENCY)"
FIGURES+=("kill: $RETRIED requests retried by the proxy; back to 3 running replicas $swarm_seconds s after the SIGKILL, 3 in the proxy's rotation after $rotation_seconds s")

step "(d) an update whose tasks cannot start, under load: rolled back"
load_start rollback
t0=$(now)
docker service update --detach --no-resolve-image --args "--no-such-flag" "$API" >/dev/null
rolled_back() {
    case "$(update_state)" in
        rollback_completed) return 0 ;;
        completed|paused) fail "the update ended '$(update_state)', not rolled back" ;;
    esac
    return 1
}
wait_for 180 "update rolled back" rolled_back
wait_for 60 "3 replicas on $UPDATE_TAG in rotation" converged 3 "$UPDATE_TAG"
expect "arguments after the rollback" "$(docker service inspect -f '{{json .Spec.TaskTemplate.ContainerSpec.Args}}' "$API")" null
rollback_seconds=$(since "$t0")
load_stop rollback
proxy_log_news
expect "failed requests during the failed update" "$FAILED" 0
FIGURES+=("rollback: the update rolled back and 3 replicas in rotation after $rollback_seconds s; $RETRIED requests retried by the proxy")

step "figures (RELIABILITY.md, section 6)"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo); Docker $(docker version -f '{{.Server.Version}}'); concurrency $CONCURRENCY"
printf '%s\n' "${FIGURES[@]}"
echo "swarm e2e: passed in $(( $(date +%s) - started )) s"
