#!/usr/bin/env bash
# Create .venv and install devora_lab with the locked versions of everything it needs.
# Needs only python3 (3.11+); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "devora_lab needs Python 3.11 or newer; found $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .

# The tests start real servers and a real browser: redis-server (cache, budgets), prometheus
# (scraping the exporter) and chromium (reports, JupyterLab). Each is installed from Debian's
# packages when absent; where that is impossible the tests that need it are skipped.
want=()
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
command -v prometheus >/dev/null 2>&1 || want+=(prometheus)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
if [ "${#want[@]}" -gt 0 ]; then
    SUDO=none
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    fi
    if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's ${want[*]} for the tests"
        { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "${want[@]}" >/dev/null; } \
            || echo "could not install ${want[*]}: the tests that need them will be skipped" >&2
    else
        echo "${want[*]} not installed and cannot be installed here (needs root or sudo," \
             "and apt-get): the tests that need them will be skipped;" \
             "install with: sudo apt-get install ${want[*]}" >&2
    fi
fi
echo "environment ready in .venv"
