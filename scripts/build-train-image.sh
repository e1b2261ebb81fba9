#!/usr/bin/env bash
# Builds the training image (Dockerfile.train, context training/) without any container
# registry:
#   1. scripts/build-base-images.sh makes local/debian:bookworm-slim (skipped when it exists);
#   2. the host's pip downloads every wheel of training/requirements.txt for the image's Python
#      (3.11) and architecture into training/wheels (git-ignored), checked against the lock's
#      hashes, so the image build fetches no Python package itself (it needs the Debian mirror
#      only). Redone only when the lock changes (a stamp file); pip's cache makes a redo cheap;
#   3. for the length of the build, serves training/wheels over HTTP on the Docker bridge's
#      host address (python3 -m http.server, WHEELS_PORT), where the build's pip finds them
#      (WHEELS_URL): 2.6 GB of wheels never enter the build context, which the classic builder
#      would send on every build;
#   4. docker build, tagged sentiment-train:<hash of the lock>-<hash of the trainer>,
#      :src-<hash of every source> and :latest. The environment layer is keyed on the lock
#      alone: with unchanged requirements a rebuild takes seconds.
# Prints the tags, the image size and the build time.
#
# What a build costs (measured on a 2-vCPU Intel Xeon, 2026-12-07, local base image present, PyPI
# at ~55 MB/s, while Rust builds shared the machine: on a quiet one expect less):
#   cold: the wheels, 2.6 GB, downloaded in 104 s; docker build 12 to 16 min (749 s and 962 s
#         in two runs), nearly all of it writing 4.4 GB of installed packages and copying them
#         into the runtime stage, disk-bound;
#   a rebuild with unchanged requirements: 3 s with nothing changed, 12 s after a change to
#         the trainer's code (its layer only). The image: 4.7 GB (docs/training.md: Image).
#
# Environment (all optional):
#   IMAGE=sentiment-train        repository name of the tags
#   BASE_IMAGE                   base of both stages (default local/debian:bookworm-slim, made by
#                                step 1; debian:bookworm-slim where a registry is reachable)
#   WHEELS=1                     0: let pip fetch from PyPI (or PIP_INDEX_URL) inside the build
#   WHEELS_PORT=18765            host port the wheels are served on during the build (part of
#                                the environment layer's cache key: keep it fixed)
#   PYTHON=python3               the host Python whose pip downloads the wheels
#   TAG_ONLY=1                   print the src- tag these sources would get, build nothing
# Extra arguments go to `docker build` (e.g. --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-sentiment-train}
BASE_IMAGE=${BASE_IMAGE:-local/debian:bookworm-slim}
WHEELS=${WHEELS:-1}
PYTHON=${PYTHON:-python3}
CONTEXT=training
PY_VERSION=3.11

log() { printf '[build-train-image] %s\n' "$*" >&2; }

started=$(date +%s)
lock_hash=$(sha256sum <"$CONTEXT/requirements.txt" | cut -c1-12)
code_hash=$(find "$CONTEXT/sentiment_train" -name '*.py' -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12)
src_hash=$(cat Dockerfile.train "$CONTEXT/.dockerignore" "$CONTEXT/requirements.txt" | cat - <(echo "$code_hash") | sha256sum | cut -c1-12)
if [ "${TAG_ONLY:-0}" = 1 ]; then
    echo "$IMAGE:src-$src_hash"
    exit 0
fi

if [ "$BASE_IMAGE" = local/debian:bookworm-slim ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    IMAGES=runtime scripts/build-base-images.sh >/dev/null
fi

if [ "$WHEELS" = 1 ]; then
    PYTHON=$PYTHON scripts/download-wheels.sh "$CONTEXT/requirements.txt" "$CONTEXT/wheels" "$PY_VERSION"
fi

wheel_args=()
server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap stop_server EXIT
if [ "$WHEELS" = 1 ]; then
    # Build containers reach the host at the default bridge's gateway.
    bridge=$(ip -4 -o addr show docker0 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')
    bridge=${bridge:-172.17.0.1}
    port=${WHEELS_PORT:-18765}
    "$PYTHON" -m http.server --bind "$bridge" --directory "$CONTEXT/wheels" "$port" >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 1 50); do
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "http://$bridge:$port/.stamp" 2>/dev/null; then break; fi
        kill -0 "$server_pid" 2>/dev/null || { log "error: cannot serve the wheels on $bridge:$port (WHEELS_PORT)"; exit 1; }
        sleep 0.1
    done
    wheel_args=(--build-arg "WHEELS_URL=http://$bridge:$port/")
fi

if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

tags=("$IMAGE:$lock_hash-$code_hash" "$IMAGE:src-$src_hash" "$IMAGE:latest")
tag_args=()
for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
log "docker build -f Dockerfile.train ${tag_args[*]} $CONTEXT (base $BASE_IMAGE)"
docker build -f Dockerfile.train --build-arg "BASE_IMAGE=$BASE_IMAGE" "${wheel_args[@]}" \
    --build-arg "TRAIN_VERSION=$lock_hash" "${tag_args[@]}" "$@" "$CONTEXT"
stop_server
server_pid=

size=$(docker image inspect -f '{{.Size}}' "$IMAGE:latest")
printf '%s\n' "${tags[@]}"
log "image $IMAGE:latest: $(( (size + 500000) / 1000000 )) MB; built in $(($(date +%s) - started))s"
