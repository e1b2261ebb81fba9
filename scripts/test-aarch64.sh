#!/usr/bin/env bash
# Runs the aarch64 (NEON) CPU kernels on an x86 machine, under qemu's user-mode emulation:
# correctness only (emulation says nothing about speed).
#
#   scripts/test-aarch64.sh          # kernels: src/model/cpu's unit tests and
#                                    #   kernels::<level>::<op> (tests/compute_paths/kernels.rs),
#                                    #   on the kernels alone (.ci/aarch64-kernels): about 70 s
#                                    #   from cold on 2 cores, half of it under qemu
#   scripts/test-aarch64.sh server   # the server's compute_paths binary, cross-built:
#                                    #   parity::neon::, parity::portable::, long_inputs::neon,
#                                    #   kernels::neon:: on the shared models (SHARED_DIR):
#                                    #   about 36 min of build from cold and 66 under qemu
#   scripts/test-aarch64.sh all      # both
#
# Needs Debian's qemu-user-static, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross, and
# `rustup target add aarch64-unknown-linux-gnu` (.ci/run installs them). The cross linker and
# qemu as cargo's runner are set here, in the environment, for the aarch64 target only: x86
# builds are untouched. At the neon level the trials must run, not be reported ignored: the
# script fails if any is.
#
# Environment (all optional):
#   AARCH64_TIMEOUT=600   seconds each run under qemu may take (`timeout`)
#   SHARED_DIR=../shared  the shared models (server)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-kernels}
case $mode in
    kernels | server | all) ;;
    *)
        echo "usage: $0 [kernels|server|all]" >&2
        exit 2
        ;;
esac
limit=${AARCH64_TIMEOUT:-600}
target=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
# The C code of the server's dependencies (ring, onig).
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

for tool in aarch64-linux-gnu-gcc qemu-aarch64-static; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)" >&2
        exit 1
    }
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Runs `cargo test` with the arguments under the time limit, its output shown and kept in
# $log; fails if no test ran (a filter that matches nothing), or if a neon trial was reported
# ignored (the emulated CPU lacking NEON).
run() {
    local rc=0
    timeout "$limit" cargo test --target "$target" "$@" 2>&1 | tee "$log" || rc=$?
    [ "$rc" = 0 ] || { echo "error: cargo test $* failed ($rc; 124: over ${limit}s)" >&2; exit 1; }
    grep -qE 'test result: ok\. [1-9][0-9]* passed' "$log" || {
        echo "error: cargo test $* ran no test" >&2
        exit 1
    }
    if grep -E '::neon(::|\s).*ignored' "$log"; then
        echo "error: neon trials were not run under qemu (above)" >&2
        exit 1
    fi
}

if [ "$mode" != server ]; then
    start=$(date +%s)
    (cd .ci/aarch64-kernels && cargo test --target "$target" --no-run --quiet)
    built=$(date +%s)
    (cd .ci/aarch64-kernels && run)
    echo "kernels: built in $((built - start)) s, ran in $(($(date +%s) - built)) s"
fi
[ "$mode" != kernels ] || exit 0

export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
start=$(date +%s)
cargo test --target "$target" --test compute_paths --no-run --quiet
built=$(date +%s)
# libtest-mimic takes one filter: one run each.
for filter in parity::neon:: parity::portable:: long_inputs::neon kernels::neon::; do
    run --test compute_paths -- "$filter"
done
echo "server: compute_paths built in $((built - start)) s, ran in $(($(date +%s) - built)) s"
