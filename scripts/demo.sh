#!/usr/bin/env bash
# Set everything up and run the console with simulated agents playing an incident,
# on the embedded default (SQLite + in-memory channel layer). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python manage.py demo "$@"
