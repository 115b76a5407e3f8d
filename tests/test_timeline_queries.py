"""A coordination with 10,000 frames: its page and the next page of its timeline cost the
same number of queries as one with 100 (keyset pagination, nothing per frame)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from coordination.canonical import canonical
from coordination.models import Coordination, Frame, Orientation
from coordination.present import TIMELINE_PAGE
from tests.factories import send

pytestmark = pytest.mark.django_db

KINDS = [
    ("orientation", {"role": "triage", "intent": "diagnose", "guardrails": ["no writes"]}),
    ("route_request", {"target": "metrics-agent", "need": "queue depth"}),
    ("route_response", {"result": {"queue_depth": 3}, "branches": [{"action": "retry"}]}),
    ("focus_snapshot", {"state": "draining", "health": "WARN"}),
]


def build(key: str, count: int, agent) -> Coordination:
    """`count` chained-looking frames in one bulk insert (the console does not verify hashes)."""
    coordination = Coordination.objects.create(key=key, head_seq=count - 1, state="draining")
    frames = []
    for seq in range(count):
        kind, payload = KINDS[seq % len(KINDS)]
        frame = {
            "v": "0.1",
            "id": f"{key}-{seq}",
            "ts": 1764000000000 + seq,
            "type": kind,
            "from": agent.name,
            "payload": payload,
        }
        frames.append(
            Frame(
                coordination=coordination,
                seq=seq,
                prev_hash=f"{seq:064x}",
                hash=f"{seq + 1:064x}",
                ltp_id=frame["id"],
                sender=agent.name,
                agent=agent,
                type=kind,
                raw=canonical(frame),
                warnings=["ts is earlier than this sender's previous frame"] if seq % 7 else [],
            )
        )
    Frame.objects.bulk_create(frames, batch_size=2000)
    first = Frame.objects.get(coordination=coordination, seq=0)
    Orientation.objects.create(
        coordination=coordination, agent=agent, frame=first, role="triage", guardrails=["x"]
    )
    coordination.latest_snapshot = Frame.objects.get(coordination=coordination, seq=3)
    coordination.save()
    # An escalation in each, so the cards' queries are counted too.
    send(
        agent,
        {
            "coordination_id": key,
            "route_response": {"branches": [{"action": "escalate", "reason": "need a human"}]},
        },
    )
    return coordination


def _measure(client: Client, coordination: Coordination) -> tuple[int, int, list[int]]:
    with CaptureQueriesContext(connection) as page_queries:
        page = client.get(f"/coordinations/{coordination.key}/")
    assert page.status_code == 200
    older = int(re.search(r"\?before=(\d+)", page.content.decode()).group(1))
    with CaptureQueriesContext(connection) as next_queries:
        rows = client.get(
            f"/coordinations/{coordination.key}/timeline/?before={older}",
            headers={"HX-Request": "true"},
        )
    assert rows.status_code == 200
    assert not any("OFFSET" in q["sql"].upper() for q in next_queries.captured_queries)
    seqs = [int(s) for s in re.findall(r'id="frame-(\d+)"', rows.content.decode())]
    return len(page_queries), len(next_queries), seqs


def test_detail_and_next_timeline_page_queries_do_not_grow_with_the_chain(agents, client_for):
    small = build("small-incident", 100, agents.triage)
    big = build("big-incident", 10_000, agents.triage)
    client = client_for("alice")
    client.get("/coordinations/")  # the session's first-request work, outside the counts

    small_page, small_next, _ = _measure(client, small)
    big_page, big_next, big_rows = _measure(client, big)

    assert (big_page, big_next) == (small_page, small_next)
    # The next page is the next TIMELINE_PAGE frames, newest first, right below the first.
    head = big.frames.order_by("-seq").first().seq
    assert big_rows == list(range(head - TIMELINE_PAGE, head - 2 * TIMELINE_PAGE, -1))
