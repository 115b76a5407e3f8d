"""The outbox safety net (frames owed that no event announced) costs one query per check for
all the agent sockets of a process, not one per socket, and still finds what is owed."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import override_settings

from coordination import outbox
from coordination.models import Agent, Coordination, Delivery
from tests.factories import FLEET, agent_socket, frame, send

pytestmark = pytest.mark.django_db(transaction=True)


def idle_agents(count: int) -> list[tuple[Agent, str]]:
    return [Agent.create_with_token(f"idle-{i}", scope=FLEET) for i in range(count)]


def owe_quietly(agent: Agent) -> str:
    """A frame owed to `agent`, announced to nobody (no event: as the sweeper's writes on the
    in-memory layer, or a message a full channel dropped)."""
    send(agent, [frame("opening", "orientation", {"intent": "idle"}, coordination_id="quiet")])
    with transaction.atomic():
        locked = Coordination.locked(Coordination.objects.get(key="quiet").pk)
        stored = outbox.emit(locked, "route_response", {"branches": []})
        Delivery.objects.create(frame=stored, agent=agent, ltp_id=stored.ltp_id)
    return stored.ltp_id


async def test_idle_sockets_share_one_outbox_query_and_the_owed_socket_gets_its_frame(
    monkeypatch,
):
    made = await sync_to_async(idle_agents)(8)
    reads = []
    real = outbox.agents_owed

    def counted() -> set[int]:
        reads.append(1)
        return real()

    monkeypatch.setattr(outbox, "agents_owed", counted)
    sockets = [agent_socket(token) for _, token in made]
    with override_settings(OUTBOX_CHECK_SECONDS=0.1):
        for socket in sockets:
            await socket.connect()
        try:
            await asyncio.sleep(1.0)
            # 8 sockets checking every 0.1 s for 1 s: 80 queries if each asked for itself.
            assert 0 < len(reads) <= 25, len(reads)
            owed_id = await sync_to_async(owe_quietly)(made[3][0])
            arrived = json.loads(await sockets[3].receive_from(timeout=5))
            assert arrived["id"] == owed_id
            for i, socket in enumerate(sockets):
                if i != 3:
                    assert await socket.receive_nothing(timeout=0.05)
        finally:
            for socket in sockets:
                await socket.disconnect()
