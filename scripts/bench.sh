#!/usr/bin/env bash
# Set up and measure ltpdash against a real daphne, beside a bare reference daphne on the same
# stack; prints figures with the issue's targets beside them (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
if [[ " $* " == *" --scale-out "* ]]; then ./scripts/services.sh >/dev/null; fi
# 1,000 idle agent sockets, the client's and the server's ends, each a file descriptor.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec .venv/bin/python scripts/bench.py "$@"
