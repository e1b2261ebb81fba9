#!/usr/bin/env bash
# Builds the CPU image without any container registry:
#   1. scripts/build-base-images.sh makes local/debian:bookworm-slim and local/rust:bookworm
#      (skipped when they exist);
#   2. `cargo vendor` puts every crate of Cargo.lock in target/docker-deps (git-ignored; redone
#      only when Cargo.lock changes), so the image build needs no network;
#   3. docker build, tagged sentiment-server:<Cargo.toml version>, :<git short sha> (with
#      -dirty when the work tree has uncommitted changes) and :latest;
#   4. prints the tags and the image size, and fails when it is over MAX_IMAGE_MB.
#
# Environment (all optional):
#   IMAGE=sentiment-server       repository name of the tags
#   LOCAL_BASE=1                 0: official rust:1-bookworm / debian:bookworm-slim from a registry
#   VENDOR=1                     0: let cargo fetch crates inside the build
#   MAX_IMAGE_MB=120             size budget of the runtime image (0: no check; GPU=1: none)
#   GPU=1                        the CUDA image instead: Dockerfile.gpu on local CUDA base images
#                                (scripts/build-cuda-base-images.sh), tags with a -cuda suffix
#   CUDA_COMPUTE_CAP=90          GPU architecture of the CUDA image
# Extra arguments go to `docker build` (e.g. --no-cache, --progress=plain).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-sentiment-server}
GPU=${GPU:-0}
LOCAL_BASE=${LOCAL_BASE:-1}
VENDOR=${VENDOR:-1}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-120}
RUNTIME_TAG=${RUNTIME_TAG:-local/debian:bookworm-slim}
BUILDER_TAG=${BUILDER_TAG:-local/rust:bookworm}
DEPS_DIR=target/docker-deps

log() { printf '[build-image] %s\n' "$*" >&2; }

started=$(date +%s)
version=$(awk -F'"' '/^\[/ { section = $0 } section == "[package]" && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || { log "error: no version in Cargo.toml"; exit 1; }
if git rev-parse --git-dir >/dev/null 2>&1; then
    git_sha=$(git rev-parse HEAD)
    short_sha=$(git rev-parse --short HEAD)
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
        short_sha="$short_sha-dirty"
        git_sha="$git_sha-dirty"
    fi
    source_url=$(git remote get-url origin 2>/dev/null || echo unknown)
else
    git_sha=unknown short_sha=nogit source_url=unknown
fi

build_args=(--build-arg "VERSION=$version" --build-arg "GIT_SHA=$git_sha" --build-arg "SOURCE_URL=$source_url")
suffix=
if [ "$GPU" = 1 ]; then
    suffix=-cuda
    MAX_IMAGE_MB=0
    build_args+=(-f Dockerfile.gpu --build-arg "CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}")
    if [ "$LOCAL_BASE" = 1 ]; then
        scripts/build-cuda-base-images.sh >/dev/null
        build_args+=(--build-arg "BUILDER_IMAGE=local/cuda:13.0-devel" --build-arg "RUNTIME_IMAGE=local/cuda:13.0-runtime")
    fi
elif [ "$LOCAL_BASE" = 1 ]; then
    RUNTIME_TAG=$RUNTIME_TAG BUILDER_TAG=$BUILDER_TAG scripts/build-base-images.sh >/dev/null
    build_args+=(--build-arg "BUILDER_IMAGE=$BUILDER_TAG" --build-arg "RUNTIME_IMAGE=$RUNTIME_TAG")
fi

if [ "$VENDOR" = 1 ]; then
    lock_sum=$(sha256sum Cargo.lock Cargo.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$DEPS_DIR/.stamp" 2>/dev/null)" != "$lock_sum" ]; then
        log "vendoring crates into $DEPS_DIR"
        rm -rf "$DEPS_DIR"
        mkdir -p "$DEPS_DIR/.cargo"
        cargo vendor --quiet --locked --versioned-dirs "$DEPS_DIR/vendor" >/dev/null
        cat >"$DEPS_DIR/.cargo/config.toml" <<'EOF'
# Written by scripts/build-image.sh for the image build only: crates come from vendor/.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"

[net]
offline = true
EOF
        echo "$lock_sum" >"$DEPS_DIR/.stamp"
    fi
else
    rm -rf "$DEPS_DIR"
fi

# The classic builder when BuildKit's client (buildx) is missing; the Dockerfile suits both.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

tags=("$IMAGE:$version$suffix" "$IMAGE:$short_sha$suffix" "$IMAGE:latest$suffix")
tag_args=()
for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
log "docker build ${tag_args[*]}"
docker build "${build_args[@]}" "${tag_args[@]}" "$@" .

size=$(docker image inspect -f '{{.Size}}' "$IMAGE:$version$suffix")
size_mb=$(( (size + 500000) / 1000000 ))
printf '%s\n' "${tags[@]}"
log "image $IMAGE:$version$suffix: $size_mb MB ($size bytes); built in $(($(date +%s) - started))s"
if [ "$MAX_IMAGE_MB" != 0 ] && [ "$size_mb" -gt "$MAX_IMAGE_MB" ]; then
    log "error: the image is over the $MAX_IMAGE_MB MB budget"
    exit 1
fi
