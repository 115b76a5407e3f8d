#!/usr/bin/env bash
# Set up and measure the frame path against a real daphne; prints figures and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
if [[ " $* " == *" --scale-out "* ]]; then ./scripts/services.sh >/dev/null; fi
exec .venv/bin/python scripts/bench.py "$@"
