#!/usr/bin/env bash
# Downloads every wheel of a hashed lock for a Docker image's Python and architecture, so that
# an image build installs them without reaching PyPI itself (scripts/build-mlflow-image.sh,
# scripts/build-train-image.sh):
#
#   scripts/download-wheels.sh REQUIREMENTS DEST [PYTHON_VERSION]     # default 3.11 (bookworm's)
#
# Each wheel is checked against the lock's hashes (pip download --require-hashes). DEST holds a
# .stamp (the lock's hash and the architecture): with the same lock nothing is downloaded again.
# The architecture is the Docker engine's. PYTHON (default python3) is the host Python whose pip
# downloads.
set -euo pipefail
req=$1 dest=$2 py_version=${3:-3.11}
PYTHON=${PYTHON:-python3}
log() { printf '[download-wheels] %s\n' "$*" >&2; }

case "$(docker info --format '{{.Architecture}}')" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) log "error: no wheels for architecture $(docker info --format '{{.Architecture}}'); WHEELS=0"; exit 1 ;;
esac
stamp="$(sha256sum <"$req" | cut -c1-16) $arch"
if [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
log "downloading the wheels of $req into $dest (python $py_version, $arch)"
started=$(date +%s)
rm -rf "$dest"
# Every manylinux tag up to glibc 2.36 (bookworm's): pip does not expand a custom --platform to
# the older ones itself.
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
platforms+=(--platform "manylinux2014_$arch")
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary :all: --implementation cp --python-version "$py_version" \
    "${platforms[@]}" --dest "$dest" -r "$req"
echo "$stamp" >"$dest/.stamp"
log "$(du -sh "$dest" | cut -f1) in $(($(date +%s) - started))s"
