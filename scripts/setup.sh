#!/usr/bin/env bash
# Set up everything ltpdash needs on a fresh machine: a virtualenv with the Python packages,
# and (with --test) Debian's Chromium for the browser tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ltpdash needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$python" -m venv .venv
fi
echo "==> installing Python packages"
.venv/bin/python -m pip install -q --upgrade pip
if [ "$with_test" = 1 ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
else
    .venv/bin/python -m pip install -q -e .
fi
# The agents' client (its own distribution, ltpdash-client) with its LangGraph and MCP
# adapters: simulate, the benchmark and the tests use it.
.venv/bin/python -m pip install -q -e "./clients/python[langgraph,mcp]"

if [ "$with_test" = 1 ] && [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium (browser tests drive it through Playwright)"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi

echo "==> migrating the embedded database"
.venv/bin/python manage.py migrate --no-input -v0
