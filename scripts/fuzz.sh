#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time: FUZZ_SECONDS per target (default 60,
# as in CI; raise it for a longer run on demand, e.g. FUZZ_SECONDS=3600 scripts/fuzz.sh).
#   FUZZ_TARGETS="http_requests"  only these targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER=address        libFuzzer with AddressSanitizer (default: none; see below)
#   FUZZ_JOBS=2                   parallel libFuzzer workers per target (default 1)
#   SHARED_DIR=/path/to/shared    the test models (default ../shared beside the checkout)
# Needs the nightly toolchain (cargo +nightly); installs cargo-fuzz when missing. New corpus
# entries go to fuzz/corpus/<target>/ (git-ignored, except the seed-* inputs that
# fuzz/make_seeds.py writes); a crash leaves its input in fuzz/artifacts/<target>/, printed at
# the end, and makes this script exit 1.
#
# Sanitizer: the targets look for panics, 5xx answers and broken invariants, which every build
# catches (debug assertions and overflow checks are on in both). AddressSanitizer would add
# checks of the `unsafe` code (candle, gemm, tokenizers, the packed kernels) but, measured on a
# 2-core machine, nearly doubles the first build (~16 min against ~9) and runs 4-8x slower
# (http_requests 53 against 406 inputs/s, tokenize_batch 24 against 123), too slow for a
# one-minute CI run. For a long run on demand: FUZZ_SANITIZER=address FUZZ_SECONDS=3600.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
export SHARED_DIR="${SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ ! -d "$SHARED_DIR/fixtures" ]; then
    echo "error: shared test data not found at $SHARED_DIR (set SHARED_DIR)" >&2
    exit 1
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "==> installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal || {
        echo "error: cargo-fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
        exit 1
    }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

build_flags=(--sanitizer "$FUZZ_SANITIZER" --debug-assertions)
# Inputs are requests and texts: 4 KiB reaches every limit the targets set up.
fuzz_flags=(-max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=30 -print_final_stats=1)
if [ "$FUZZ_JOBS" -gt 1 ]; then
    fuzz_flags+=(-fork="$FUZZ_JOBS")
fi

started=$(date +%s)
echo "==> building ${targets[*]} (sanitizer: $FUZZ_SANITIZER)"
(cd fuzz && cargo +nightly fuzz build "${build_flags[@]}")
echo "    built in $(($(date +%s) - started))s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${FUZZ_SECONDS}s"
    log="$logs/$target.log"
    if (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$target" -- "${fuzz_flags[@]}") >"$log" 2>&1; then
        # The final status line: executions, coverage, features, corpus.
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    else
        failed+=("$target")
        echo "!!! $target failed" >&2
        # The panic message with the request that caused it, then how libFuzzer ended.
        grep -m 1 -A 40 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" >&2 || true
        echo "--- the end of its log:" >&2
        tail -n 30 "$log" >&2
        artifacts=$(grep -Eo 'Test unit written to [^[:space:]]+' "$log" | sed 's/^Test unit written to //' || true)
        for artifact in $artifacts; do
            echo "!!! reproducer: $artifact" >&2
            echo "    replay: (cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $target $artifact)" >&2
        done
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "error: fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
echo "==> no crash in ${targets[*]} (${FUZZ_SECONDS}s each)"
