"""Taking a coordination over and handing it off, end to end: agents are told who owns it
now, the chain records it, the console shows the owner."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from ltpdash_client import LtpClient

from coordination.models import Coordination, Frame
from tests.console_helpers import KEY, SEED_REQUEST, Operator

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _owner_is(name: str):
    return lambda f: f["from"].startswith("human:") and f["payload"].get("owner") == name


async def test_take_over_and_hand_off_reach_agents_and_the_timeline(live, agents, operators):
    triage = LtpClient(live.agent_url, agents.triage_token, "triage-agent", coordination_id=KEY)
    metrics = LtpClient(live.agent_url, agents.metrics_token, "metrics-agent", coordination_id=KEY)
    async with triage, metrics:
        await triage.send(SEED_REQUEST)
        await metrics.receive(type="route_request")
        alice = await sync_to_async(Operator)(live.http, operators["alice"])

        took = await sync_to_async(alice.post)(f"/coordinations/{KEY}/take-over/", {}, htmx=True)
        assert took.status == 200
        assert "You own incident-4821 now." in took.body
        for agent in (triage, metrics):
            snapshot = await agent.receive(type="focus_snapshot", where=_owner_is("human:alice"))
            assert snapshot["payload"]["handoff"] == {"from": None, "to": "alice", "by": "alice"}

        handed = await sync_to_async(alice.post)(
            f"/coordinations/{KEY}/hand-off/", {"to": "bob", "note": "end of my shift"}
        )
        assert handed.status == 302
        for agent in (triage, metrics):
            snapshot = await agent.receive(type="focus_snapshot", where=_owner_is("human:bob"))
            assert snapshot["from"] == "human:alice"
            assert snapshot["payload"]["handoff"] == {"from": "alice", "to": "bob", "by": "alice"}
            assert snapshot["payload"]["reason"] == "alice handed off to bob: end of my shift"

    coordination = await Coordination.objects.select_related("owner").aget(key=KEY)
    assert coordination.owner.username == "bob"
    handoffs = [
        f
        async for f in Frame.objects.filter(coordination=coordination, type="focus_snapshot")
        .exclude(sender__in=["triage-agent", "metrics-agent"])
        .order_by("seq")
    ]
    assert [f.sender for f in handoffs] == ["human:alice", "human:alice"]

    page = await sync_to_async(alice.get)(f"/coordinations/{KEY}/")
    assert '<dd class="owner">bob</dd>' in page.body
    assert f'id="frame-{handoffs[-1].seq}"' in page.body
    assert "alice handed off to bob: end of my shift" in page.body  # the row's summary


@pytest.mark.django_db
def test_a_coordination_cannot_be_handed_to_an_operator_who_cannot_decide(agents, operators):
    from tests.console_helpers import seed

    seed(agents)
    client = Client()
    client.force_login(operators["alice"])
    frames = Frame.objects.count()

    response = client.post(
        f"/coordinations/{KEY}/hand-off/", {"to": "vic"}, headers={"HX-Request": "true"}
    )

    assert "Choose an operator who can decide escalations." in response.content.decode()
    assert Coordination.objects.get(key=KEY).owner is None
    assert Frame.objects.count() == frames
