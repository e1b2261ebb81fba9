#!/usr/bin/env bash
# Builds the MLflow image of the compose `tracking` profile (docker/mlflow) without any container
# registry:
#   1. scripts/build-base-images.sh makes local/debian:bookworm-slim (skipped when it exists);
#   2. the host's pip downloads every wheel of docker/mlflow/requirements.txt for the image's
#      Python (3.11) and architecture into docker/mlflow/wheels (git-ignored), checked against the
#      lock's hashes, so the image build fetches no Python package itself (it needs the Debian
#      mirror only). pip's cache makes reruns cheap;
#   3. docker build, tagged sentiment-mlflow:<mlflow version>, :src-<hash of docker/mlflow> and
#      :latest. The src- tag names exactly these sources: tests/e2e/compose.sh builds only when
#      it is missing.
#
# Environment (all optional):
#   IMAGE=sentiment-mlflow       repository name of the tags
#   BASE_IMAGE                   base of both stages (default local/debian:bookworm-slim, made by
#                                step 1; debian:bookworm-slim where a registry is reachable)
#   WHEELS=1                     0: let pip fetch from PyPI (or PIP_INDEX_URL) inside the build
#   PYTHON=python3               the host Python whose pip downloads the wheels
#   TAG_ONLY=1                   print the src- tag these sources would get, build nothing
# Extra arguments go to `docker build` (e.g. --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-sentiment-mlflow}
BASE_IMAGE=${BASE_IMAGE:-local/debian:bookworm-slim}
WHEELS=${WHEELS:-1}
PYTHON=${PYTHON:-python3}
CONTEXT=docker/mlflow
PY_VERSION=3.11

log() { printf '[build-mlflow-image] %s\n' "$*" >&2; }

started=$(date +%s)
version=$(sed -n 's/^mlflow==\([^ ]*\).*/\1/p' "$CONTEXT/requirements.txt")
[ -n "$version" ] || { log "error: no mlflow== pin in $CONTEXT/requirements.txt"; exit 1; }
src_hash=$(cat "$CONTEXT/Dockerfile" "$CONTEXT/start.sh" "$CONTEXT/requirements.txt" | sha256sum | cut -c1-12)
if [ "${TAG_ONLY:-0}" = 1 ]; then
    echo "$IMAGE:src-$src_hash"
    exit 0
fi

if [ "$BASE_IMAGE" = local/debian:bookworm-slim ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    IMAGES=runtime scripts/build-base-images.sh >/dev/null
fi

if [ "$WHEELS" = 1 ]; then
    PYTHON=$PYTHON scripts/download-wheels.sh "$CONTEXT/requirements.txt" "$CONTEXT/wheels" "$PY_VERSION"
else
    rm -rf "$CONTEXT/wheels"
fi

if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

tags=("$IMAGE:$version" "$IMAGE:src-$src_hash" "$IMAGE:latest")
tag_args=()
for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
log "docker build ${tag_args[*]} (base $BASE_IMAGE)"
docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "MLFLOW_VERSION=$version" \
    "${tag_args[@]}" "$@" "$CONTEXT"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE:$version")
printf '%s\n' "${tags[@]}"
log "image $IMAGE:$version: $(( (size + 500000) / 1000000 )) MB; built in $(($(date +%s) - started))s"
