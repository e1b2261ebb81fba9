#!/usr/bin/env bash
# Builds sentiment-server with `--features cuda` on a machine that has no CUDA toolkit and no GPU,
# from CUDA 13.0 packages on PyPI (see ../shared/notes/cuda-build.md for how this was worked out).
#
#   scripts/build-cuda.sh [build]   toolkit (if needed) + release build + compiled tests (default)
#   scripts/build-cuda.sh setup     only install the toolkit and assemble CUDA_HOME
#   scripts/build-cuda.sh env       only print the build environment as `export` lines:
#                                     eval "$(scripts/build-cuda.sh env)"
#   source scripts/build-cuda.sh    only export the build environment into the calling shell
#
# Steps of `build` (each one is skipped when its result is already there, so reruns are cheap):
#   1. pip-installs the pinned CUDA 13.0 packages into $CUDA_PYPI_PREFIX/site-packages.
#      Pinned, companions included: the H100 machine's driver (CUDA 13.0) cannot load PTX from a
#      newer nvcc, and nvcc's package pulls its companions unpinned.
#   2. assembles $CUDA_PYPI_PREFIX/cuda-home: symlinks bin, include and nvvm into the packages,
#      and lib64/ with each library under its versioned and its unversioned (.so) name.
#   3. writes and compiles lib64/stubs/libcuda.so, a link-time stand-in for the driver library
#      (candle forces cudarc's `dynamic-linking`, so the build links `-lcuda`, and PyPI ships
#      no driver stub): every `cu*` function of the packages' cuda.h, each returning
#      CUDA_ERROR_STUB_LIBRARY, soname libcuda.so.1. It is only ever on the *link* path; at run
#      time the real driver's libcuda.so.1 must be found instead.
#   4. cargo build --release --features cuda, cargo test --release --features cuda --no-run,
#      with CARGO_TARGET_DIR=target/cuda so it never locks the CPU build's target/, and writes
#      the artifact list to $CARGO_TARGET_DIR/release/cuda-artifacts.txt (read by pack-gpu.sh).
#
# A real toolkit instead of PyPI (e.g. in nvidia/cuda:*-devel images, see Dockerfile.gpu):
# set CUDA_HOME to it (it must have bin/nvcc and lib64/stubs/libcuda.so); steps 1-3 are skipped.
#
# Environment (all optional):
#   CUDA_PYPI_PREFIX     where the packages and cuda-home go
#                        (default $HOME/.cache/sentiment-server/cuda-pypi)
#   CUDA_HOME            an existing CUDA toolkit to use instead of the PyPI one
#   CUDA_COMPUTE_CAP     GPU architecture of the kernels (default 90: H100/H200; candle then
#                        builds sm_90a kernels, which run on those GPUs only)
#   NVCC_APPEND_FLAGS    extra nvcc flags (default --compress-mode=size: 45.7 MB -> 19.4 MB)
#   CARGO_TARGET_DIR     cargo's output folder (default target/cuda in the repository)
#   CARGO_BUILD_JOBS     passed through to cargo as usual
#   PYTHON               Python used for pip and the stub generator (default python3)
#
# Needs: python3 with pip, gcc, cargo. Network only for step 1 (PyPI), and for crates.io when
# the cargo registry cache lacks a crate.

# Sourced: export the environment into the caller's shell without changing its shell options.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    _sentiment_cuda_sourced=1
else
    _sentiment_cuda_sourced=0
    set -euo pipefail
fi

_sentiment_cuda_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------------------------------------
# Pinned packages: all of the 13.0 series (see the note above). cccl provides <nv/target>, which
# the cuda_fp16.h / cuda_bf16.h headers need.
CUDA_PYPI_PACKAGES=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cublas==13.0.2.14
    nvidia-cuda-nvrtc==13.0.88
    nvidia-curand==10.4.0.35
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-cccl==13.0.85
)

CUDA_PYPI_PREFIX="${CUDA_PYPI_PREFIX:-$HOME/.cache/sentiment-server/cuda-pypi}"
_sentiment_cuda_site="$CUDA_PYPI_PREFIX/site-packages"
_sentiment_cuda_assembled="$CUDA_PYPI_PREFIX/cuda-home"

# A CUDA_HOME given from outside that is not our assembled folder is a real toolkit.
if [[ -n "${CUDA_HOME:-}" && "${CUDA_HOME%/}" != "$_sentiment_cuda_assembled" ]]; then
    _sentiment_cuda_system=1
else
    _sentiment_cuda_system=0
    CUDA_HOME="$_sentiment_cuda_assembled"
fi

# The build environment (step 4, `env`, and sourcing all use this).
_sentiment_cuda_export_env() {
    export CUDA_HOME
    export CUDA_PATH="$CUDA_HOME" CUDA_ROOT="$CUDA_HOME"
    case ":$PATH:" in
        *":$CUDA_HOME/bin:"*) ;;
        *) export PATH="$CUDA_HOME/bin:$PATH" ;;
    esac
    # Link path only: the stub must never be on LD_LIBRARY_PATH.
    case ":${LIBRARY_PATH:-}:" in
        *":$CUDA_HOME/lib64/stubs:"*) ;;
        *) export LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" ;;
    esac
    # No nvidia-smi to ask on a build machine: name the architecture.
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:---compress-mode=size}"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$_sentiment_cuda_repo/target/cuda}"
}

if [[ $_sentiment_cuda_sourced == 1 ]]; then
    _sentiment_cuda_export_env
    if [[ ! -x "$CUDA_HOME/bin/nvcc" ]]; then
        echo "build-cuda.sh: warning: no nvcc in $CUDA_HOME yet; run scripts/build-cuda.sh setup" >&2
    fi
    return 0
fi

# ---------------------------------------------------------------------------------------------
# Executed from here on.
log() { printf '[build-cuda] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PYTHON="${PYTHON:-python3}"
MODE="${1:-build}"

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

# Step 1: the pinned packages, installed once (a stamp file records the exact list).
install_packages() {
    local stamp="$CUDA_PYPI_PREFIX/.packages" want
    want="$(printf '%s\n' "${CUDA_PYPI_PACKAGES[@]}")"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$_sentiment_cuda_site/nvidia/cu13/bin/nvcc" ]]; then
        log "CUDA packages already in $_sentiment_cuda_site"
        return
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
    log "pip install ${CUDA_PYPI_PACKAGES[*]} -> $_sentiment_cuda_site"
    # A fresh folder each time: pip --target does not upgrade or remove files cleanly.
    rm -rf "$_sentiment_cuda_site" "$stamp"
    mkdir -p "$CUDA_PYPI_PREFIX"
    # --target also skips the "externally managed environment" check of distribution Pythons.
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$_sentiment_cuda_site" "${CUDA_PYPI_PACKAGES[@]}"
    [[ -x "$_sentiment_cuda_site/nvidia/cu13/bin/nvcc" ]] ||
        die "pip installed no nvidia/cu13/bin/nvcc; the packages' layout changed?"
    printf '%s\n' "$want" >"$stamp"
}

# Step 2: CUDA_HOME made of symlinks into the packages.
assemble_cuda_home() {
    local cu13="$_sentiment_cuda_site/nvidia/cu13" lib name base
    mkdir -p "$CUDA_HOME/lib64/stubs"
    for name in bin include nvvm; do
        ln -sfn "$cu13/$name" "$CUDA_HOME/$name"
    done
    # Every shared library under its own name and its unversioned one: libcublas.so.13 also as
    # libcublas.so, libnvrtc-builtins.so.13.0 also as libnvrtc-builtins.so; static ones as is.
    for lib in "$cu13"/lib/*.so.* "$cu13"/lib/*.a; do
        [[ -e "$lib" ]] || continue
        name="$(basename "$lib")"
        ln -sfn "$lib" "$CUDA_HOME/lib64/$name"
        if [[ "$name" == *.so.* ]]; then
            base="${name%%.so.*}.so"
            ln -sfn "$lib" "$CUDA_HOME/lib64/$base"
        fi
    done
    # Some build scripts look in lib/ rather than lib64/.
    ln -sfn lib64 "$CUDA_HOME/lib"
    log "CUDA_HOME assembled at $CUDA_HOME"
}

# Step 3: the libcuda.so link stub, generated from cuda.h.
build_driver_stub() {
    local header="$CUDA_HOME/include/cuda.h" dir="$CUDA_HOME/lib64/stubs"
    [[ -f "$header" ]] || die "no $header"
    if [[ -f "$dir/libcuda.so" && "$dir/libcuda.so" -nt "$header" && "$dir/libcuda-stub.c" -nt "$0" ]]; then
        log "driver stub already built: $dir/libcuda.so"
        return
    fi
    command -v gcc >/dev/null || die "gcc not found"
    # Every symbol a caller of cuda.h can end up referencing:
    #  - each `cuXxx(` declaration;
    #  - each name in the `#define cuXxx cuXxx_v2` remapping block (both sides);
    #  - for __CUDA_API_PTDS(x) / __CUDA_API_PTSZ(x), also x_ptds / x_ptsz (per-thread streams).
    # Arguments are irrelevant to the linker, so each becomes `int name(void)`. The error is
    # CUDA_ERROR_STUB_LIBRARY (34), what NVIDIA's own stub returns.
    "$PYTHON" - "$header" "$dir/libcuda-stub.c" <<'PY'
import re, sys
header, out = sys.argv[1], sys.argv[2]
text = open(header, encoding="utf-8", errors="replace").read()
text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)      # drop comments: they mention names too
text = re.sub(r"//[^\n]*", " ", text)
names = set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", text))
for line in text.splitlines():
    m = re.match(r"\s*#\s*define\s+(cu[A-Z]\w*)\s+(.*)", line)
    if not m:
        continue
    names.add(m.group(1))
    names.update(re.findall(r"\b(cu[A-Z]\w*)\b", m.group(2)))
    for kind, api in re.findall(r"__CUDA_API_PT(DS|SZ)\s*\(\s*(cu[A-Z]\w*)\s*\)", m.group(2)):
        names.add(f"{api}_pt{kind.lower()}")
if len(names) < 400:
    sys.exit(f"only {len(names)} cu* names found in {header}: not the CUDA driver header?")
with open(out, "w") as f:
    f.write("/* Generated by scripts/build-cuda.sh from %s: a link-time stand-in for libcuda.so.\n"
            " * Every function fails with CUDA_ERROR_STUB_LIBRARY. Never load it at run time. */\n" % header)
    for name in sorted(names):
        f.write("int %s(void) { return 34; }\n" % name)
print(len(names), "symbols", file=sys.stderr)
PY
    gcc -shared -fPIC -O0 -w -Wl,-soname,libcuda.so.1 -o "$dir/libcuda.so.1" "$dir/libcuda-stub.c"
    ln -sfn libcuda.so.1 "$dir/libcuda.so"
    log "driver stub built: $dir/libcuda.so"
}

check_toolkit() {
    [[ -x "$CUDA_HOME/bin/nvcc" ]] || die "no $CUDA_HOME/bin/nvcc"
    [[ -e "$CUDA_HOME/lib64/stubs/libcuda.so" ]] || die "no $CUDA_HOME/lib64/stubs/libcuda.so"
    log "$("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1)"
}

setup_toolkit() {
    if [[ $_sentiment_cuda_system == 1 ]]; then
        log "using the CUDA toolkit at CUDA_HOME=$CUDA_HOME"
    else
        install_packages
        assemble_cuda_home
        build_driver_stub
    fi
    check_toolkit
}

# Step 4: the release build and the compiled tests; lists what to carry to a GPU machine.
build() {
    _sentiment_cuda_export_env
    cd "$_sentiment_cuda_repo"
    local started=$SECONDS messages="$CARGO_TARGET_DIR/release/cuda-test-messages.json"
    local manifest="$CARGO_TARGET_DIR/release/cuda-artifacts.txt"
    log "CARGO_TARGET_DIR=$CARGO_TARGET_DIR CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP NVCC_APPEND_FLAGS=$NVCC_APPEND_FLAGS"
    log "cargo build --release --features cuda"
    cargo build --release --features cuda --locked
    log "cargo test --release --features cuda --no-run"
    mkdir -p "$(dirname "$messages")"
    # JSON on stdout names each test executable; diagnostics still render on stderr.
    cargo test --release --features cuda --locked --no-run \
        --message-format=json-render-diagnostics >"$messages"
    # Manifest: `<kind> <name> <path>` per line: `bin sentiment-server ...`, `test parity ...`.
    {
        printf 'bin sentiment-server %s\n' "$CARGO_TARGET_DIR/release/sentiment-server"
        "$PYTHON" - "$messages" <<'PY'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("profile", {}).get("test"):
        continue
    exe = m.get("executable")
    if not exe or exe in seen:
        continue
    seen.add(exe)
    kind = m["target"]["kind"][0]
    # tests/*.rs keep their name; the unit tests of the library and the binary get a prefix.
    name = m["target"]["name"] if kind == "test" else f"unit-{kind}-{m['target']['name']}"
    print("test", name, exe)
PY
    } >"$manifest"
    local minutes=$(((SECONDS - started) / 60)) seconds=$(((SECONDS - started) % 60))
    log "built in ${minutes}m${seconds}s; artifacts (also in $manifest):"
    local kind name path
    while read -r kind name path; do
        printf '  %-5s %-28s %s (%s)\n' "$kind" "$name" "$path" "$(du -h "$path" | cut -f1)"
    done <"$manifest"
    echo "Run on a GPU machine with the driver's libraries on LD_LIBRARY_PATH (never the stub);"
    echo "scripts/pack-gpu.sh gathers these plus the test data into .gpu/ for scripts/gpu-check.sh."
}

case "$MODE" in
    build)
        setup_toolkit
        build
        ;;
    setup)
        setup_toolkit
        _sentiment_cuda_export_env
        log "toolkit ready; environment: eval \"\$($0 env)\""
        ;;
    env)
        _sentiment_cuda_export_env
        for var in CUDA_HOME CUDA_PATH CUDA_ROOT PATH LIBRARY_PATH CUDA_COMPUTE_CAP NVCC_APPEND_FLAGS CARGO_TARGET_DIR; do
            printf 'export %s=%q\n' "$var" "${!var}"
        done
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
