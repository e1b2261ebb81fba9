#!/usr/bin/env bash
# The build context keeps secrets and weights out: plants a .env, a secrets/ file, a nested
# .env and model weights in the checkout, sends the real context (with the real .dockerignore)
# to the engine, and checks that none of them arrives. Then the image itself: no planted name
# anywhere in its filesystem.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
planted=(.env secrets/planted-password.txt src/.env.local models/default/model.safetensors)
made=()
cleanup() {
    local f
    for f in "${made[@]}"; do rm -f "$f"; done
    rmdir secrets models/default 2>/dev/null || true
    docker rmi sentiment-context-probe >/dev/null 2>&1 || true
    # By tag, never by id: a cached build shares its image id with sentiment-server's tags.
    docker images --format '{{.Repository}}:{{.Tag}}' sentiment-planted | xargs -r docker rmi >/dev/null 2>&1 || true
}
trap cleanup EXIT
for f in "${planted[@]}"; do
    if [ -e "$f" ]; then fail "$f already exists; refusing to overwrite it"; fi
    mkdir -p "$(dirname "$f")"
    echo "PLANTED-SECRET-$$" >"$f"
    made+=("$f")
done

step "what the engine receives as build context"
probe=$(mktemp)
printf 'FROM %s\nCOPY . /context\n' "${PROBE_BASE:-local/debian:bookworm-slim}" >"$probe"
DOCKER_BUILDKIT=0 docker build -q -f "$probe" -t sentiment-context-probe . >/dev/null
rm -f "$probe"
listing=$(docker run --rm --entrypoint find sentiment-context-probe /context -maxdepth 2)
for f in "${planted[@]}"; do
    if grep -qx "/context/$f" <<<"$listing"; then fail "$f reached the build context"; fi
    ok "$f left out"
done
for f in .git target/debug .venv-bench; do
    if grep -qx "/context/$f" <<<"$listing"; then fail "$f reached the build context"; fi
    ok "$f left out"
done
if docker run --rm --entrypoint grep sentiment-context-probe -rqs "PLANTED-SECRET-$$" /context; then
    fail "planted content is somewhere in the context"
fi
ok "no planted content in the context"

step "the image, built with the planted files in the checkout"
IMAGE=sentiment-planted MAX_IMAGE_MB=0 scripts/build-image.sh >/dev/null 2>&1 || fail "image build failed"
IMAGE=sentiment-planted:latest
if docker run --rm --entrypoint sh "$IMAGE" -c "grep -rqs PLANTED-SECRET / --exclude-dir=proc --exclude-dir=sys 2>/dev/null"; then
    fail "planted content in $IMAGE"
fi
for f in /.env /src /secrets /models/model/model.safetensors; do
    if docker run --rm --entrypoint sh "$IMAGE" -c "test -e $f"; then fail "$f exists in $IMAGE"; fi
done
ok "no sources, secrets or weights in $IMAGE"
echo "context e2e: passed"
