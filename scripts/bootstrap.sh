#!/usr/bin/env bash
# Create or update the local virtualenv from the pinned set. Idempotent, and a fast no-op when
# pyproject.toml and constraints.txt have not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SHOPREC_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Shoprec needs Python 3.11, found %s" % sys.version.split()[0]'

# The system browser the demo page's test drives (tests/test_serving_page.py): Debian's chromium
# and its chromedriver, installed once when missing; never a browser download.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  pkgs=(chromium chromium-driver)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing ${pkgs[*]} with apt-get (the demo page's browser test)"
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
      # a fresh machine has no package lists yet
      apt-get update -qq >>"$log" 2>&1 || true
      apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1 || \
        echo "[bootstrap] could not install ${pkgs[*]} (apt-get failed: $(tail -n1 "$log")):" \
             "the demo page test will fail until they are installed"
    fi
    rm -f "$log"
  else
    echo "[bootstrap] ${pkgs[*]} missing and not root: run 'apt-get install" \
         "--no-install-recommends ${pkgs[*]}' as root, or the demo page test will fail"
  fi
fi

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
  -c constraints.txt -e '.[dev,scale]'
"$VENV/bin/python" -m pip check
rm -f "$VENV"/.shoprec-installed-*
touch "$stamp"
echo "[bootstrap] ready: $VENV"
