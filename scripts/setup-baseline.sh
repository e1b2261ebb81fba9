#!/usr/bin/env bash
# Creates the Python environment for the benchmark baseline (FastAPI + transformers, CPU) and
# for benches/plot.py: a venv with benches/baseline/requirements.txt installed from PyPI.
#
#   scripts/setup-baseline.sh [VENV_DIR]     # default: .venv-bench/ in the repository root
#
# Idempotent: when the venv already matches the requirements file it only checks that and exits.
# Needs Python >= 3.11 (PYTHON=python3.x to choose one) and about 5 GB of disk: PyPI's Linux
# torch is the CUDA build, whose libraries must be present for `import torch` even on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${1:-${VENV:-.venv-bench}}"
req=benches/baseline/requirements.txt
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

smoke_test() {
    "$venv/bin/python" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
import torch, transformers, fastapi, uvicorn, matplotlib  # noqa: F401
x = torch.randn(2, 2) @ torch.randn(2, 2)
assert x.shape == (2, 2) and torch.isfinite(x).all()
EOF
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && smoke_test 2>/dev/null; then
    echo "baseline venv up to date: $venv"
    exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python is $("$python" --version 2>&1); Python >= 3.11 is needed (set PYTHON=...)" >&2
    exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
rm -f "$stamp"
# --no-deps: the file is a complete lock; it leaves out torch's CUDA-only dependencies.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -r "$req"
smoke_test
echo "$want" >"$stamp"
echo "baseline venv ready: $venv ($(du -sh "$venv" | cut -f1))"
