"""The benchmark's tables: each figure as the median of the repeated runs with their min-max,
and the issue's target beside it. Printed, never asserted."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

# (label, key, format, target)
Row = tuple[str, str, str, str]

LIGHT: list[Row] = [
    ("frames/s acked (all agents)", "frames_per_s", "{:.0f}", "100 sent"),
    ("ack p50 ms", "ack_p50_ms", "{:.1f}", ""),
    ("ack p99 ms", "ack_p99_ms", "{:.1f}", "<= 20"),
    ("viewer end-to-end p50 ms", "viewer_p50_ms", "{:.1f}", ""),
    ("viewer end-to-end p99 ms", "viewer_p99_ms", "{:.1f}", "<= 50"),
    ("share of frames shown, min over viewers", "shown_min", "pct", "100%"),
    ("every viewer in seq order", "in_order", "yes", "yes"),
]
SATURATION: list[Row] = [
    ("frames/s acked (all agents)", "frames_per_s", "{:.0f}", ""),
    ("ack p50 ms", "ack_p50_ms", "{:.0f}", ""),
    ("ack p99 ms", "ack_p99_ms", "{:.0f}", ""),
    ("viewer end-to-end p50 ms", "viewer_p50_ms", "{:.0f}", ""),
    ("viewer end-to-end p99 ms", "viewer_p99_ms", "{:.0f}", ""),
    ("share of frames shown, min over viewers", "shown_min", "pct", "100%"),
    ("every viewer in seq order", "in_order", "yes", "yes"),
    ("new agent socket to first reply, max ms", "new_agent_max_ms", "{:.0f}", "<= 1000"),
    ("new browser socket to first fragment, max ms", "new_page_max_ms", "{:.0f}", "<= 1000"),
]
INBOX: list[Row] = [
    ("critical request -> card on inbox socket p50 ms", "inbox_p50_ms", "{:.1f}", ""),
    ("critical request -> card on inbox socket p99 ms", "inbox_p99_ms", "{:.1f}", "<= 50"),
    ("decision round trip p50 ms", "decision_p50_ms", "{:.1f}", ""),
    ("decision round trip p99 ms", "decision_p99_ms", "{:.1f}", "<= 50"),
]
INBOX_ACROSS: list[Row] = [
    (label, key, fmt, "<= 100" if key == "inbox_p99_ms" else target)
    for label, key, fmt, target in INBOX
]
MEMORY: list[Row] = [
    ("idle agent connections", "agents", "{:.0f}", ""),
    ("daphne RSS with them, MiB", "rss_mib", "{:.0f}", "< 1024"),
    ("daphne RSS before they connected, MiB", "rss_before_mib", "{:.0f}", ""),
    ("RSS growth while they connected, KiB each", "kib_per_agent", "{:.0f}", ""),
    ("seconds to connect them all", "connect_s", "{:.1f}", ""),
    ("heartbeat ack p99 ms", "heartbeat_p99_ms", "{:.0f}", ""),
]
INGEST: list[tuple[str, str, str, str]] = [
    # (label, server, key, format)
    ("ltpdash frames/s", "main", "frames_per_s", "{:.0f}"),
    ("bare frames/s", "bare", "frames_per_s", "{:.0f}"),
    ("ratio ltpdash/bare", "ratio", "", "{:.2f}"),
    ("ltpdash ack p50 ms", "main", "ack_p50_ms", "{:.0f}"),
    ("ltpdash ack p99 ms", "main", "ack_p99_ms", "{:.0f}"),
    ("bare ack p99 ms", "bare", "ack_p99_ms", "{:.0f}"),
    ("daphne CPU, ltpdash (cores)", "main", "server_cpu", "{:.2f}"),
    ("daphne CPU, bare (cores)", "bare", "server_cpu", "{:.2f}"),
    ("client CPU during bare (cores)", "bare", "client_cpu", "{:.2f}"),
    ("errors, ltpdash", "main", "errors", "{:.0f}"),
]


def _one(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "-"
    if fmt == "pct":
        return f"{value * 100:.1f}%"
    return fmt.format(value)


def cell(values: list[float], fmt: str) -> str:
    """`median (min-max)` over the runs; the value alone for one run."""
    if not values:
        return "-"
    if fmt == "yes":
        bad = sum(1 for v in values if v < 1)
        return "yes" if not bad else f"no ({bad} of {len(values)} runs)"
    if len(values) == 1:
        return _one(values[0], fmt)
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{_one(mid, fmt)} ({_one(low, fmt)}–{_one(high, fmt)})"


def table(title: str, figures: dict[str, list[float]], rows: list[Row]) -> list[str]:
    lines = [f"== {title}", f"   {'figure':48} {'measured':>26}   target"]
    for label, key, fmt, target in rows:
        shown = f"(target {target})" if target else ""
        lines.append(f"   {label:48} {cell(figures.get(key, []), fmt):>26}   {shown}")
    return lines


def ingest_table(
    runs: dict[str, dict[str, list[float]]], columns: list[tuple[str, str]], target: str
) -> list[str]:
    """Rows are figures, columns are settings (key, label); `runs` is keyed `<key>.<server>`."""
    width = 22
    head = "".join(f"{label:>{width}}" for _, label in columns)
    lines = [f"   {'figure':32}{head}"]
    for label, server, key, fmt in INGEST:
        cells = []
        for column, _ in columns:
            if server == "ratio":
                values = _ratios(runs.get(f"{column}.main", {}), runs.get(f"{column}.bare", {}))
            else:
                values = runs.get(f"{column}.{server}", {}).get(key, [])
            cells.append(f"{cell(values, fmt):>{width}}")
        suffix = f"   (target {target})" if server == "ratio" else ""
        lines.append(f"   {label:32}{''.join(cells)}{suffix}")
    return lines


def _ratios(main: dict[str, list[float]], bare: dict[str, list[float]]) -> list[float]:
    """Per run, ltpdash over the same run's bare figure (runs are interleaved)."""
    pairs = zip(main.get("frames_per_s", []), bare.get("frames_per_s", []), strict=False)
    return [m / b for m, b in pairs if b]


def printer(prefix: str = "") -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"{prefix}{line}", flush=True)

    return say
