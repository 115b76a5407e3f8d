#!/usr/bin/env bash
# Set everything up and run the whole test suite twice: on the embedded default
# (SQLite + in-memory channel layer), then on PostgreSQL + Redis. The suite is tests/ and
# clients/python/tests/ (the agents' client against a real daphne): pyproject's testpaths.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --test
./scripts/services.sh

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> import layers (import-linter)"
.venv/bin/lint-imports --no-cache

echo "==> types (mypy + django-stubs)"
.venv/bin/mypy

echo "==> tests on the embedded default (SQLite WAL + in-memory channel layer)"
env -u DATABASE_URL -u REDIS_URL .venv/bin/pytest "$@"

# Before the last test run, so the output still closes on the test runner's summary.
echo "==> benchmark (quick; figures printed, not asserted)"
env -u DATABASE_URL -u REDIS_URL .venv/bin/python scripts/bench.py --quick

# Property examples generated per transport: 1000 on the embedded pass (the default), 300 on
# this one unless LTPDASH_HYPOTHESIS_EXAMPLES is set; both passes also send one message of each
# hostile class (tests/test_properties.py, HOSTILE), so each class meets each database.
echo "==> tests on PostgreSQL + Redis"
DATABASE_URL=${LTPDASH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
REDIS_URL=${LTPDASH_TEST_REDIS_URL:-redis://127.0.0.1:6379/0} \
LTPDASH_HYPOTHESIS_EXAMPLES=${LTPDASH_HYPOTHESIS_EXAMPLES:-300} \
    .venv/bin/pytest "$@"
