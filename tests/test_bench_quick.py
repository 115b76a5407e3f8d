"""The benchmark's quick mode runs to the end and prints every section's figures.

Only that it runs and what it prints are checked, never a figure's value: speed is measured
by ./scripts/bench.sh and printed beside the issue's targets. Its exit status does carry one
verdict, which is not a speed: every frame ltpdash acknowledged is in a verifying chain.
It runs on PostgreSQL + Redis (DATABASE_URL set), in --scale-out with two ltpdash processes:
the test command runs the embedded quick benchmark itself and fails if it does."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = ["== Ingest", "== Light load", "== Saturation", "== Escalation", "== Memory"]
FIGURES = [
    "ltpdash frames/s",
    "bare frames/s",
    "ratio ltpdash/bare",
    "chain: verified",
    "viewer end-to-end p99 ms",
    "share of frames shown, min over viewers",
    "every viewer in seq order",
    "new agent socket to first reply, max ms",
    "new browser socket to first fragment, max ms",
    "critical request -> card on inbox socket p99 ms",
    "decision round trip p99 ms",
    "daphne RSS with them, MiB",
]


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL"),
    reason="scripts/test.sh runs the embedded quick benchmark itself, between the two test runs",
)
def test_the_quick_scale_out_benchmark_runs_and_prints_every_figure():
    command = [sys.executable, "scripts/bench.py", "--quick", "--scale-out"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in [*SECTIONS, "== The same across two processes"]:
        assert heading in done.stdout, heading
    for figure in FIGURES:
        line = next((x for x in done.stdout.splitlines() if figure in x), None)
        assert line is not None, figure
        assert "(target" in line or figure.startswith(("ltpdash", "bare", "chain")), line
