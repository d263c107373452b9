#!/usr/bin/env bash
# Create or update the local virtualenv from the pinned set. Idempotent, and a fast no-op when
# pyproject.toml and constraints.txt have not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SHOPREC_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Shoprec needs Python 3.11, found %s" % sys.version.split()[0]'

key=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp="$VENV/.shoprec-installed-$key"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "[bootstrap] installing the pinned environment into $VENV (first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
extra=()
[ -d /opt/wheels ] && extra+=(--find-links /opt/wheels)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${extra[@]}" \
  -c constraints.txt -e '.[dev]'
"$VENV/bin/python" -m pip check
rm -f "$VENV"/.shoprec-installed-*
touch "$stamp"
echo "[bootstrap] ready: $VENV"
