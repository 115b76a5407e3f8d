"""Only participants speak in a coordination and read it: the agent that opened it, agents
routed into it, agents an operator admitted, and agents whose token's scope covers it. Only
the agent a request is assigned to answers it. Agent names are a safe set, never a human's."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from coordination.ingest import ingest
from coordination.models import (
    Agent,
    Coordination,
    Delivery,
    Frame,
    OperatorAct,
    Participant,
    RouteRequest,
)
from tests.factories import acked_id, agent_client, command, frame, online

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "refunds-7"


@pytest.fixture
def trio(db):
    """A opens refunds-7 and asks B; C is an agent of the same fleet, never part of it. None
    of the three has a token scope."""
    tokens = {}
    agents = {}
    for name in ("agent-a", "agent-b", "agent-c"):
        agents[name], tokens[name] = Agent.create_with_token(name)
    return agents, tokens


def _codes(agent: Agent, data: dict) -> list[str | None]:
    return [o.error.code if o.error else None for o in ingest(agent, data)]


@pytest.mark.e2e
async def test_an_intruder_is_refused_and_the_assigned_agent_still_answers(live, trio):
    agents, tokens = trio
    await sync_to_async(online)("agent-b")
    a = agent_client(live, tokens["agent-a"], "agent-a", coordination_id=KEY)
    b = agent_client(live, tokens["agent-b"], "agent-b", coordination_id=None)
    c = agent_client(live, tokens["agent-c"], "agent-c", coordination_id=None)
    async with a, b, c:
        asked = acked_id(
            await a.send({"id": "ask", "route_request": {"target": "agent-b", "need": "refund"}}),
            "route_request",
        )
        await b.receive(type="route_request")

        # C answers A's request, claims a human decided, and rewrites the snapshot ...
        forged = [
            {"type": "hello", "coordination_id": KEY, "payload": {"coordination_id": KEY}},
            {
                "type": "route_response",
                "coordination_id": KEY,
                "payload": {
                    "in_reply_to": asked,
                    "branches": [{"action": "approve", "decided_by": "admin1"}],
                },
            },
            {
                "type": "focus_snapshot",
                "coordination_id": KEY,
                "payload": {"state": "RESOLVED by human"},
            },
        ]
        for n, message in enumerate(forged):
            reply = await c.send_raw(json.dumps({"v": "0.1", "id": f"c-{n}", "ts": 1, **message}))
            assert reply["type"] == "error"
            assert reply["payload"]["code"] == "not_a_participant", reply
        # ... and its socket stays open: a frame in a coordination of its own is stored.
        assert (await c.send({"id": "own", "coordination_id": "c-own", "orientation": {}}))[0][
            "type"
        ] == "ack"

        # B's real answer still reaches A; nothing of C's does.
        await b.send({"type": "route_response", "payload": {"in_reply_to": asked, "result": {}}})
        answer = await a.receive(type="route_response", where=lambda f: f["from"] == "agent-b")
        assert answer["payload"]["in_reply_to"] == asked
        with pytest.raises(asyncio.TimeoutError):
            await a.receive(timeout=0.5, where=lambda f: f["from"] == "agent-c")

    @sync_to_async
    def check():
        coordination = Coordination.objects.get(key=KEY)
        assert not coordination.frames.filter(sender="agent-c").exists()
        request = RouteRequest.objects.get(ltp_id=asked)
        assert request.response_frame.sender == "agent-b"
        assert coordination.latest_snapshot is None
        assert not Delivery.objects.filter(agent=agents["agent-a"], frame__sender="agent-c")

    await check()


def test_an_outsiders_reads_are_404_like_a_coordination_that_does_not_exist(trio):
    agents, tokens = trio
    assert _codes(agents["agent-a"], frame("o-1", "orientation", {}, coordination_id=KEY)) == [None]
    client = Client()
    for token, expected in [(tokens["agent-a"], 200), (tokens["agent-c"], 404)]:
        for what in ("context", "trace"):
            url = f"/api/v1/coordinations/{KEY}/{what}"
            reply = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert reply.status_code == expected, (what, reply.status_code)
    missing = client.get(
        "/api/v1/coordinations/nowhere/context", HTTP_AUTHORIZATION=f"Bearer {tokens['agent-c']}"
    )
    outsider = client.get(
        f"/api/v1/coordinations/{KEY}/context", HTTP_AUTHORIZATION=f"Bearer {tokens['agent-c']}"
    )
    assert missing.json() == outsider.json()  # no hint that it exists


def test_the_opener_and_agents_routed_in_are_participants(trio):
    agents, _ = trio
    online("agent-b")
    assert _codes(
        agents["agent-a"], frame("r-1", "route_request", {"target": "agent-b"}, coordination_id=KEY)
    ) == [None]
    coordination = Coordination.objects.get(key=KEY)
    via = dict(
        Participant.objects.filter(coordination=coordination).values_list("agent__name", "via")
    )
    assert via == {"agent-a": "opened", "agent-b": "routed"}
    assert _codes(agents["agent-b"], frame("b-1", "orientation", {}, coordination_id=KEY)) == [None]
    assert _codes(agents["agent-c"], frame("c-1", "orientation", {}, coordination_id=KEY)) == [
        "not_a_participant"
    ]


def test_a_token_scope_covers_coordinations_by_pattern(trio):
    agents, _ = trio
    _codes(agents["agent-a"], frame("o-1", "orientation", {}, coordination_id=KEY))
    command("createagent", "agent-c", "--rotate", "--scope", "refunds-*,billing-?")
    agents["agent-c"].refresh_from_db()
    assert _codes(agents["agent-c"], frame("c-1", "orientation", {}, coordination_id=KEY)) == [None]
    _codes(agents["agent-a"], frame("o-2", "orientation", {}, coordination_id="incident-1"))
    assert _codes(
        agents["agent-c"], frame("c-2", "orientation", {}, coordination_id="incident-1")
    ) == ["not_a_participant"]


def test_an_operator_admits_an_agent_from_the_command_and_the_page(trio, operators, client_for):
    agents, _ = trio
    _codes(agents["agent-a"], frame("o-1", "orientation", {}, coordination_id=KEY))
    assert "admitted by ops" in command("admit", KEY, "agent-c", "--by", "ops")
    assert _codes(agents["agent-c"], frame("c-1", "orientation", {}, coordination_id=KEY)) == [None]
    admitted = Frame.objects.get(coordination__key=KEY, type="participant")
    assert admitted.sender == "human:ops" and admitted.payload["agent"] == "agent-c"

    Agent.create_with_token("agent-d")
    reply = client_for("alice").post(
        reverse("coordination-admit", args=[KEY]), {"agent": "agent-d"}
    )
    assert reply.status_code == 302
    assert Participant.objects.filter(agent__name="agent-d", via="admitted").exists()
    assert OperatorAct.objects.filter(
        act="admitted", subject="agent-d", operator_name="alice"
    ).exists()
    # A viewer cannot admit.
    client_for("vic").post(reverse("coordination-admit", args=[KEY]), {"agent": "agent-b"})
    assert not Participant.objects.filter(agent__name="agent-b").exists()


@pytest.mark.parametrize(
    "name",
    [
        "ltpdash",
        "LTPDASH",
        "human:alice",
        "Human:bob",
        "a/b",
        "a b",
        "a\nb",
        "ops:1",
        "\u0430gent",
        "",
    ],
)
def test_reserved_and_unsafe_agent_names_are_refused_on_the_page_and_in_the_command(
    name, client_for
):
    reply = client_for("ada").post(reverse("agent-create"), {"name": name})
    assert reply.status_code == 400
    if name:
        with pytest.raises(CommandError):
            command("createagent", name)
    assert not Agent.objects.filter(name=name).exists()
