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

# The Redis cache tests start their own redis-server; without one they are skipped.
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=none
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    fi
    if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's redis-server for the Redis cache tests"
        { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq redis-server >/dev/null; } \
            || echo "could not install redis-server: the Redis cache tests will be skipped" >&2
    else
        echo "redis-server is not installed and cannot be installed here (needs root or" \
             "sudo, and apt-get): the Redis cache tests will be skipped;" \
             "install it with: sudo apt-get install redis-server" >&2
    fi
fi
echo "environment ready in .venv"
