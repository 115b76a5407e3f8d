"""Acceptance 3 of issue 9, loosely: a flooding agent is held near its budget on both
transports, and its neighbour's acks stay about as fast as when the server was quiet.

The exact figures come from `./scripts/bench.sh --flood`; this asserts with slack, since the
test machine is shared and noisy."""

import importlib.util
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from coordination.models import Agent
from tests.factories import start_daphne, stop_daphne

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LIMIT = 100
FLOOD = Path(__file__).resolve().parent.parent / "scripts" / "flood.py"


def _flood_module():
    spec = importlib.util.spec_from_file_location("flood", FLOOD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_flooder_is_held_to_its_budget_and_its_neighbour_keeps_its_pace(tmp_path):
    flood = _flood_module()
    tokens = {}
    for name in ("neighbour", "flooder"):
        _, tokens[name] = await sync_to_async(Agent.create_with_token)(name)
    server = await sync_to_async(start_daphne)(tmp_path, {"LTPDASH_RATE_LIMIT": str(LIMIT)})
    try:
        figures = await flood.flood(server.http, tokens, seconds=4.0, quiet_seconds=3.0)
    finally:
        await sync_to_async(stop_daphne)(server)
    print("\n".join(flood.report(figures, LIMIT)))
    # Before: 1,400 frames acknowledged in 4 s over the socket, no limit at all over HTTP.
    assert figures["socket_flood_acked_per_s"] <= 2.5 * LIMIT
    assert figures["http_flood_acked_per_s"] <= 2.5 * LIMIT
    # Before: 17 ms quiet became 780 ms (socket flood) and 2.8 s (HTTP flood); on this
    # project's old code, measured here, 14 ms became 988 ms and 1,323 ms. The test machine
    # is shared: one scheduling hiccup is a p99, so the median is held to the bound
    # and the p99 only loosely (the benchmark prints both).
    for phase in ("socket_flood", "http_flood"):
        assert figures[f"{phase}_p50_ms"] <= 2 * figures["quiet_p50_ms"] + 20, figures
        assert figures[f"{phase}_p99_ms"] <= 3 * figures["quiet_p99_ms"] + 250, figures
