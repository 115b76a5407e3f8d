"""Several daphne processes on one database, with group commit (issue 10, target 6): a
coordination's chain stays gapless and verifiable whichever process appends; an operator on
one process decides for an agent on another and the decision arrives once; a process killed
mid-stream loses no frame it acknowledged.

Real processes throughout. Two processes share live events only through Redis, so the
cross-process decision runs on PostgreSQL + Redis; the other two run on both databases (on
SQLite the processes take the database's write lock in turn).
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from coordination.models import Agent, Coordination, Escalation, Frame
from coordination.trace import verify_trace
from tests.factories import (
    FLEET,
    Operator,
    agent_client,
    frame,
    start_daphne,
    stop_daphne,
    triage_client,
)
from tests.seed import KEY, SEED_REQUEST_WITH_ID, SEED_RESPONSE_WITH_ID
from tests.test_decision_delivery import RecordingClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
FAST = {"LTPDASH_RATE_LIMIT": "100000"}


def orientation(frame_id: str, key: str) -> dict:
    return frame(frame_id, "orientation", {"intent": frame_id}, coordination_id=key)


def fleet(count: int) -> dict[str, str]:
    made = [Agent.create_with_token(f"so-{i}", scope=FLEET) for i in range(count)]
    return {agent.name: token for agent, token in made}


async def pipeline(server, name: str, token: str, key: str, count: int) -> list[str]:
    """`count` orientation frames in flight at once; the ids acknowledged."""
    async with agent_client(server, token, name, coordination_id=key) as client:
        replies = await asyncio.gather(
            *(client.send(orientation(f"{name}-{n}", key)) for n in range(count))
        )
    return [r["payload"]["frame_id"] for [r] in replies if r["type"] == "ack"]


def sent_in(key: str) -> list[str]:
    """The agents' orientation frames stored in `key`'s chain (not hellos or presence)."""
    return list(
        Frame.objects.filter(coordination__key=key, type="orientation").values_list(
            "ltp_id", flat=True
        )
    )


def gapless_and_verified(key: str) -> None:
    seqs = list(Frame.objects.filter(coordination__key=key).values_list("seq", flat=True))
    assert sorted(seqs) == list(range(len(seqs)))
    assert verify_trace(Coordination.objects.get(key=key).trace_lines()).ok


async def test_two_processes_appending_to_one_chain_keep_it_gapless_and_verifiable(tmp_path):
    tokens = await sync_to_async(fleet)(6)
    first = await sync_to_async(start_daphne)(tmp_path, FAST)
    second = await sync_to_async(start_daphne)(tmp_path, FAST)
    try:
        acked = await asyncio.gather(
            *(
                pipeline(first if i % 2 else second, name, token, "shared-chain", 30)
                for i, (name, token) in enumerate(tokens.items())
            )
        )
    finally:
        await sync_to_async(stop_daphne)(first)
        await sync_to_async(stop_daphne)(second)
    acked_ids = sorted(frame_id for ids in acked for frame_id in ids)
    assert len(acked_ids) == 6 * 30
    assert sorted(await sync_to_async(sent_in)("shared-chain")) == acked_ids
    await sync_to_async(gapless_and_verified)("shared-chain")


async def test_a_killed_process_loses_no_frame_it_acknowledged(tmp_path):
    tokens = await sync_to_async(fleet)(4)
    server = await sync_to_async(start_daphne)(tmp_path, FAST)
    acked: list[str] = []

    async def send_until_killed(name: str, token: str) -> None:
        async with agent_client(
            server, token, name, coordination_id="killed", reconnect=False
        ) as c:
            for n in range(10_000):
                [reply] = await c.send(orientation(f"{name}-{n}", "killed"))
                acked.append(reply["payload"]["frame_id"])

    senders = [asyncio.create_task(send_until_killed(n, t)) for n, t in tokens.items()]
    try:
        while len(acked) < 200:
            await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)  # mid-stream: batches in flight die with it
        await asyncio.gather(*senders, return_exceptions=True)
    finally:
        await sync_to_async(stop_daphne)(server)
    stored = set(await sync_to_async(sent_in)("killed"))
    assert set(acked) <= stored, sorted(set(acked) - stored)[:5]
    await sync_to_async(gapless_and_verified)("killed")


@pytest.mark.skipif(
    not settings.REDIS_URL, reason="two processes share live events only through Redis"
)
async def test_an_operator_on_one_process_decides_for_an_agent_on_another_once(
    agents, operators, tmp_path
):
    agent_side = await sync_to_async(start_daphne)(tmp_path)
    operator_side = await sync_to_async(start_daphne)(tmp_path)
    try:
        metrics = RecordingClient(
            agent_side.agent_url, agents.metrics_token, "metrics-agent", coordination_id=KEY
        )
        async with triage_client(agent_side, agents) as triage, metrics:
            await triage.send(SEED_REQUEST_WITH_ID)
            await metrics.receive(type="route_request")
            await metrics.send(SEED_RESPONSE_WITH_ID)
            escalation = await Escalation.objects.aget(coordination__key=KEY)
            alice = await sync_to_async(Operator)(operator_side.http, operators["alice"])
            reply = await sync_to_async(alice.post)(
                f"/escalations/{escalation.pk}/decide/",
                {"verdict": "approve", "note": "page the DB on-call"},
            )
            assert reply.status == 302
            decision = await metrics.receive(
                type="route_response", where=lambda f: f["from"] == "human:alice", timeout=5
            )
            assert decision["payload"]["branches"][0]["decided_by"] == "alice"
            # Once: no second copy arrives, from either process's redelivery.
            await asyncio.sleep(2)
            assert metrics.arrived.count(decision["id"]) == 1
    finally:
        await sync_to_async(stop_daphne)(agent_side)
        await sync_to_async(stop_daphne)(operator_side)
