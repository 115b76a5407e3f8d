"""A decision reaches the agent that escalated exactly once in effect (PROTOCOL §4): stored
before it is sent, redelivered on reconnect until acknowledged, never again after."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from ltpdash_client import LtpClient

from coordination.models import Delivery, Escalation
from tests.factories import Operator, aeventually, triage_client
from tests.seed import KEY, SEED_REQUEST_WITH_ID, SEED_RESPONSE_WITH_ID

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class RecordingClient(LtpClient):
    """LtpClient that also records the id of every frame the server sends, before its own
    dedup, so a test can see a second copy if the server sent one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrived: list[str] = []

    async def _on_message(self, text: str) -> None:
        frame = json.loads(text)
        if frame.get("type") not in {"ack", "error"}:
            self.arrived.append(frame.get("id"))
        await super()._on_message(text)


async def _settle(client: LtpClient) -> None:
    """After this returns, everything the server sent in answer to hello has arrived: it
    answers a connection's messages in order, and this heartbeat's ack comes after them."""
    await client.send({"type": "heartbeat", "payload": {"seq": 1}})


async def test_decision_made_while_agent_offline_arrives_once_on_reconnect(live, agents, operators):
    def client(name, token):
        return RecordingClient(live.agent_url, token, name, coordination_id=KEY, reconnect=False)

    triage = client("triage-agent", agents.triage_token)
    metrics = client("metrics-agent", agents.metrics_token)
    async with triage, metrics:
        await triage.send(SEED_REQUEST_WITH_ID)
        await metrics.receive(type="route_request")
        await metrics.send(SEED_RESPONSE_WITH_ID)
        await triage.receive(type="route_response", where=lambda f: f["from"] == "metrics-agent")
    # metrics-agent is offline now. alice decides.
    escalation = await Escalation.objects.aget(coordination__key=KEY)
    alice = await sync_to_async(Operator)(live.http, operators["alice"])
    reply = await sync_to_async(alice.post)(
        f"/escalations/{escalation.pk}/decide/",
        {"verdict": "approve", "note": "page the DB on-call", "instructions": "replica only"},
    )
    assert reply.status == 302
    delivery = await Delivery.objects.select_related("frame").aget(
        agent=agents.metrics, frame__sender="human:alice"
    )
    assert delivery.acked_at is None  # stored, owed

    # First reconnect: the decision arrives, once, and the client acknowledges it.
    first = client("metrics-agent", agents.metrics_token)
    async with first:
        decision = await first.receive(
            type="route_response", where=lambda f: f["from"] == "human:alice"
        )
        await _settle(first)
        await aeventually(
            lambda: Delivery.objects.filter(pk=delivery.pk, acked_at__isnull=False).exists(),
            what="the agent's ack is stored",
        )
    assert decision["id"] == delivery.frame.ltp_id
    assert decision["payload"]["in_reply_to"] == escalation.in_reply_to
    assert decision["payload"]["branches"] == [
        {"action": "approve", "reason": "page the DB on-call", "decided_by": "alice"}
    ]
    assert decision["payload"]["instructions"] == "replica only"
    assert first.arrived.count(decision["id"]) == 1

    # Second reconnect: acknowledged, so not sent again.
    second = client("metrics-agent", agents.metrics_token)
    async with second:
        await _settle(second)
    assert decision["id"] not in second.arrived


async def test_unacknowledged_decision_is_redelivered_on_every_reconnect(live, agents, operators):
    metrics_kwargs = {"coordination_id": KEY, "reconnect": False, "auto_ack": False}
    triage = triage_client(live, agents)
    metrics = RecordingClient(
        live.agent_url, agents.metrics_token, "metrics-agent", **metrics_kwargs
    )
    async with triage, metrics:
        await triage.send(SEED_REQUEST_WITH_ID)
        await metrics.receive(type="route_request")
        await metrics.send(SEED_RESPONSE_WITH_ID)
        escalation = await Escalation.objects.aget(coordination__key=KEY)
        alice = await sync_to_async(Operator)(live.http, operators["alice"])
        await sync_to_async(alice.post)(
            f"/escalations/{escalation.pk}/decide/", {"verdict": "reject", "note": "too risky"}
        )
        decision = await metrics.receive(
            type="route_response", where=lambda f: f["from"] == "human:alice"
        )
    assert decision["payload"]["branches"][0]["action"] == "reject"

    # Not acknowledged: the next connection gets it again.
    again = RecordingClient(live.agent_url, agents.metrics_token, "metrics-agent", **metrics_kwargs)
    async with again:
        await _settle(again)
    assert again.arrived.count(decision["id"]) == 1
