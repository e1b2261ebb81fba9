#!/usr/bin/env bash
# Builds stand-ins for the NVIDIA CUDA base images that Dockerfile.gpu expects, for machines
# that cannot pull nvidia/cuda from a registry, from the same CUDA 13.0 PyPI packages as
# scripts/build-cuda.sh:
#
#   local/cuda:13.0-devel    local/rust:bookworm + a CUDA_HOME at /usr/local/cuda (nvcc, headers,
#                            nvvm, libraries, and the link-time libcuda stub in lib64/stubs)
#   local/cuda:13.0-runtime  local/debian:bookworm-slim + the runtime libraries the server loads
#                            (cudart, cuBLAS, cuBLASLt, cuRAND, NVRTC) on LD_LIBRARY_PATH
#
# Then:  docker build -f Dockerfile.gpu --build-arg BUILDER_IMAGE=local/cuda:13.0-devel \
#            --build-arg RUNTIME_IMAGE=local/cuda:13.0-runtime ...      (make image-gpu-local)
# The driver (libcuda.so.1) is never in an image: the NVIDIA container toolkit mounts the host's.
#
# Idempotent (existing tags are kept; FORCE=1 rebuilds). Needs Docker, python3 with pip, gcc,
# and the local base images (scripts/build-base-images.sh, run first when they are missing).
# Environment: WORK_DIR (default /var/tmp/local-cuda-images), DEVEL_TAG, RUNTIME_TAG, FORCE.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK_DIR=${WORK_DIR:-/var/tmp/local-cuda-images}
DEVEL_TAG=${DEVEL_TAG:-local/cuda:13.0-devel}
RUNTIME_TAG=${RUNTIME_TAG:-local/cuda:13.0-runtime}
FORCE=${FORCE:-0}
log() { printf '[build-cuda-base-images] %s\n' "$*" >&2; }
exists() { [ "$FORCE" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

if exists "$DEVEL_TAG" && exists "$RUNTIME_TAG"; then
    log "$DEVEL_TAG and $RUNTIME_TAG exist; kept (FORCE=1 rebuilds)"
    exit 0
fi
IMAGES="runtime builder" scripts/build-base-images.sh >/dev/null

log "CUDA 13.0 from PyPI into $WORK_DIR/cuda-pypi"
CUDA_PYPI_PREFIX=$WORK_DIR/cuda-pypi bash scripts/build-cuda.sh setup >&2
home=$WORK_DIR/cuda-pypi/cuda-home
[ -x "$home/bin/nvcc" ] && [ -f "$home/lib64/stubs/libcuda.so" ] || { log "error: no toolkit in $home"; exit 1; }

# Docker contexts cannot follow the symlinks cuda-home is made of: copy them as files.
ctx=$WORK_DIR/context
rm -rf "$ctx"
mkdir -p "$ctx/devel" "$ctx/runtime/lib64"
cp -rL "$home" "$ctx/devel/cuda"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 \
    libnvrtc-builtins.so.13.0; do
    cp -L "$home/lib64/$lib" "$ctx/runtime/lib64/" 2>/dev/null || {
        found=$(find -L "$home/lib64" -maxdepth 1 -name "${lib}*" | head -n1)
        [ -n "$found" ] || { log "error: $lib not in $home/lib64"; exit 1; }
        cp -L "$found" "$ctx/runtime/lib64/"
    }
done

log "docker build -> $DEVEL_TAG"
cat >"$ctx/devel/Dockerfile" <<'DOCKERFILE'
FROM local/rust:bookworm
COPY cuda /usr/local/cuda
ENV CUDA_HOME=/usr/local/cuda \
    CUDA_VERSION=13.0 \
    PATH=/usr/local/cuda/bin:/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN nvcc --version | tail -n 2
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$DEVEL_TAG" "$ctx/devel" >/dev/null

log "docker build -> $RUNTIME_TAG"
cat >"$ctx/runtime/Dockerfile" <<'DOCKERFILE'
FROM local/debian:bookworm-slim
COPY lib64 /usr/local/cuda/lib64
ENV CUDA_VERSION=13.0 \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$RUNTIME_TAG" "$ctx/runtime" >/dev/null
rm -rf "$ctx"
for tag in "$DEVEL_TAG" "$RUNTIME_TAG"; do
    printf '%s\t%s MB\n' "$tag" "$(($(docker image inspect -f '{{.Size}}' "$tag") / 1000000))"
done
