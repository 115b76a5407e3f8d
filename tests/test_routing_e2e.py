"""Routing over real websockets against a real daphne: the seed request to its target and
back, and the fallback ladder (offline, silent, unanswered) down to an escalation.

Silence and timeouts are detected by the sweeper, run here as one `sweep --once` pass in the
test process after moving the stored deadline into the past, as if the time had gone by.
"""

import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F
from ltpdash_client import LtpClient

from coordination.models import (
    Agent,
    Delivery,
    Escalation,
    EscalationStatus,
    Frame,
    Presence,
    RequestStatus,
    RouteRequest,
    RoutingRule,
)
from tests.factories import (
    FLEET,
    about,
    acked_id,
    aeventually,
    agent_client,
    asweep_once,
    averified_trace,
    metrics_client,
    triage_client,
)
from tests.seed import KEY, SEED_REQUEST

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HMS = r"\d\d:\d\d:\d\d"


@pytest.fixture
def metrics_b(agents):
    _, token = Agent.create_with_token("metrics-agent-b", scope=FLEET)
    return token


@pytest.fixture
def metrics_rule(db):
    return RoutingRule.objects.create(need="metrics", agents=["metrics-agent", "metrics-agent-b"])


async def ask_and_expect_fallback(
    triage: LtpClient, fallback: LtpClient, presence: str
) -> tuple[str, dict]:
    """triage-agent asks metrics-agent; metrics-agent-b gets the request, and triage-agent the
    step saying why. Returns the request's id and that step."""
    asked = acked_id(await triage.send(SEED_REQUEST), "route_request")
    forwarded = await fallback.receive(type="route_request")
    assert forwarded["id"] == asked
    step = await triage.receive(type="route_response", where=about(asked))
    (branch,) = step["payload"]["branches"]
    assert branch["action"] == "fallback"
    assert re.fullmatch(
        rf"metrics-agent {presence} since {HMS}; routed to metrics-agent-b", branch["reason"]
    ), branch["reason"]
    return asked, step


async def wait_until_offline(name: str) -> None:
    # The server records the disconnect after the socket closes; the test waits for that
    # state rather than for a duration.
    await aeventually(
        lambda: Agent.objects.get(name=name).presence == Presence.OFFLINE,
        what=f"{name} went offline",
    )


async def test_seed_request_reaches_its_target_and_the_answer_comes_back(live, agents):
    triage = triage_client(live, agents)
    metrics = metrics_client(live, agents)
    async with triage, metrics:
        acks = await triage.send(SEED_REQUEST)
        asked = acked_id(acks, "route_request")
        forwarded = await metrics.receive(type="route_request")
        assert forwarded["id"] == asked
        assert forwarded["payload"]["target"] == "metrics-agent"

        await metrics.send(
            {
                "type": "route_response",
                "payload": {
                    "in_reply_to": asked,
                    "result": {"queue_depth": 1240, "error_rate": 0.07},
                },
            }
        )
        answer = await triage.receive(
            type="route_response", where=lambda f: f["from"] == "metrics-agent"
        )
        assert answer["payload"]["in_reply_to"] == asked
        assert answer["payload"]["result"]["queue_depth"] == 1240

    @sync_to_async
    def check():
        request = RouteRequest.objects.get(ltp_id=asked)
        assert request.status == RequestStatus.ANSWERED
        assert request.assigned_to == agents.metrics
        chain = list(Frame.objects.filter(coordination__key=KEY).order_by("seq"))
        request_frame = next(f for f in chain if f.type == "route_request")
        response_frame = next(f for f in chain if f.type == "route_response")
        assert request_frame.sender == "triage-agent"
        assert response_frame.sender == "metrics-agent"
        assert request_frame.seq < response_frame.seq
        assert request.response_frame == response_frame
        # The plain case needs no routing step from ltpdash in the chain.
        assert not [f for f in chain if f.sender == "ltpdash" and f.type == "route_response"]

    await check()
    verdict = await averified_trace()
    assert verdict.ok, verdict.why


async def test_request_to_an_offline_target_goes_to_the_fallback_agent_with_the_reason(
    live, agents, metrics_b, metrics_rule
):
    async with metrics_client(live, agents):
        pass  # was here, then dropped off: offline since a known time
    await wait_until_offline("metrics-agent")

    triage = triage_client(live, agents)
    fallback = agent_client(live, metrics_b, "metrics-agent-b")
    async with triage, fallback:
        asked, step = await ask_and_expect_fallback(triage, fallback, "offline")

        await fallback.send(
            {"type": "route_response", "payload": {"in_reply_to": asked, "result": {"ok": 1}}}
        )
        answer = await triage.receive(
            type="route_response", where=lambda f: f["from"] == "metrics-agent-b"
        )
        assert answer["payload"]["in_reply_to"] == asked

    @sync_to_async
    def check():
        request = RouteRequest.objects.get(ltp_id=asked)
        assert request.status == RequestStatus.ANSWERED
        assert request.tried == ["metrics-agent", "metrics-agent-b"]
        # Never handed to the offline agent's outbox.
        assert not Delivery.objects.filter(agent=agents.metrics, frame=request.frame).exists()
        fallback_frame = Frame.objects.get(coordination__key=KEY, ltp_id=step["id"])
        assert fallback_frame.sender == "ltpdash"
        assert fallback_frame.seq > request.frame.seq

    await check()
    verdict = await averified_trace()
    assert verdict.ok, verdict.why


async def test_request_to_a_silent_target_goes_to_the_fallback_agent_with_the_reason(
    live, agents, metrics_b, metrics_rule
):
    triage = triage_client(live, agents)
    metrics = metrics_client(live, agents)
    fallback = agent_client(live, metrics_b, "metrics-agent-b")
    async with triage, metrics, fallback:
        # metrics-agent stays connected but sends no heartbeat: let its deadline pass.
        await sync_to_async(Agent.objects.filter(name="metrics-agent").update)(
            heartbeat_deadline=F("heartbeat_deadline")
            - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 1)
        )
        swept = await asweep_once()
        assert "metrics-agent: silent" in swept

        asked, _ = await ask_and_expect_fallback(triage, fallback, "silent")

        @sync_to_async
        def check():
            metrics_agent = Agent.objects.get(name="metrics-agent")
            assert metrics_agent.presence == Presence.SILENT
            assert metrics_agent.live_connections.count() == 1  # connected, just not speaking
            presence = Frame.objects.get(coordination__key=KEY, type="presence")
            assert presence.sender == "ltpdash"
            assert presence.payload["agent"] == "metrics-agent"
            assert presence.payload["presence"] == "silent"
            assert presence.payload["previous"] == "online"
            assert presence.payload["reason"].startswith("heartbeat overdue since ")
            request = RouteRequest.objects.get(ltp_id=asked)
            assert request.assigned_to.name == "metrics-agent-b"
            assert not Delivery.objects.filter(agent=agents.metrics, frame=request.frame).exists()

        await check()

    verdict = await averified_trace()
    assert verdict.ok, verdict.why


async def test_a_silent_agent_that_sends_a_heartbeat_is_online_again(live, agents):
    async with metrics_client(live, agents) as metrics:
        await sync_to_async(Agent.objects.filter(name="metrics-agent").update)(
            heartbeat_deadline=F("heartbeat_deadline")
            - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 1)
        )
        await asweep_once()
        await metrics.send({"type": "heartbeat", "payload": {"seq": 1}})

        @sync_to_async
        def check():
            assert Agent.objects.get(name="metrics-agent").presence == Presence.ONLINE
            changes = [
                (f.payload["previous"], f.payload["presence"], f.payload["reason"])
                for f in Frame.objects.filter(coordination__key=KEY, type="presence")
            ]
            assert changes[-2][:2] == ("online", "silent")
            assert changes[-1] == ("silent", "online", "heartbeat resumed")

        await check()


async def test_request_with_no_fallback_left_becomes_an_escalation_with_the_reason(live, agents):
    async with metrics_client(live, agents):
        pass
    await wait_until_offline("metrics-agent")

    async with triage_client(live, agents) as triage:
        asked = acked_id(await triage.send(SEED_REQUEST), "route_request")
        step = await triage.receive(type="route_response", where=about(asked))
        (branch,) = step["payload"]["branches"]
        assert branch["action"] == "escalate"
        assert re.fullmatch(
            rf"metrics-agent offline since {HMS}; no fallback left; escalated to humans",
            branch["reason"],
        ), branch["reason"]

    @sync_to_async
    def check():
        request = RouteRequest.objects.get(ltp_id=asked)
        assert request.status == RequestStatus.ESCALATED
        escalation = Escalation.objects.get(route_request=request)
        assert escalation.status == EscalationStatus.PENDING
        assert escalation.reason == branch["reason"]
        assert escalation.agent == agents.triage
        assert escalation.in_reply_to == asked  # the human's decision answers the request
        assert escalation.frame.ltp_id == step["id"]
        assert not Delivery.objects.filter(agent=agents.metrics).exists()

    await check()
    verdict = await averified_trace()
    assert verdict.ok, verdict.why


async def test_fallback_agent_also_offline_escalates_naming_both(
    live, agents, metrics_b, metrics_rule
):
    async with triage_client(live, agents) as triage:
        asked = acked_id(await triage.send(SEED_REQUEST), "route_request")
        step = await triage.receive(type="route_response", where=about(asked))
    (branch,) = step["payload"]["branches"]
    assert branch["action"] == "escalate"
    # Neither has ever connected, so there is no "since".
    assert branch["reason"] == (
        "metrics-agent offline; metrics-agent-b offline; no fallback left; escalated to humans"
    )


async def test_unanswered_request_follows_the_ladder_at_each_deadline(
    live, agents, metrics_b, metrics_rule
):
    def pass_deadline(ltp_id):
        # As if ROUTE_TIMEOUT + 1 seconds had passed since the request was assigned.
        gone = timedelta(seconds=settings.ROUTE_TIMEOUT + 1)
        RouteRequest.objects.filter(ltp_id=ltp_id).update(
            deadline=F("deadline") - gone, updated_at=F("updated_at") - gone
        )

    triage = triage_client(live, agents)
    metrics = metrics_client(live, agents)
    fallback = agent_client(live, metrics_b, "metrics-agent-b")
    async with triage, metrics, fallback:
        asked = acked_id(await triage.send(SEED_REQUEST), "route_request")
        await metrics.receive(type="route_request")  # ... and never answers

        await sync_to_async(pass_deadline)(asked)
        swept = await asweep_once()
        assert f"{KEY}: request {asked} timed out; routed to metrics-agent-b" in swept
        forwarded = await fallback.receive(type="route_request")
        assert forwarded["id"] == asked
        step = await triage.receive(type="route_response", where=about(asked))
        assert step["payload"]["branches"] == [
            {
                "action": "fallback",
                "reason": f"no response from metrics-agent within {settings.ROUTE_TIMEOUT}s; "
                "routed to metrics-agent-b",
                "target": "metrics-agent-b",
            }
        ]

        await sync_to_async(pass_deadline)(asked)
        swept = await asweep_once()
        assert f"{KEY}: request {asked} timed out; escalated to humans" in swept
        step = await triage.receive(
            type="route_response",
            where=lambda f: about(asked)(f) and f["payload"]["branches"][0]["action"] == "escalate",
        )
        assert step["payload"]["branches"][0]["reason"] == (
            f"no response from metrics-agent-b within {settings.ROUTE_TIMEOUT}s; "
            "no fallback left; escalated to humans"
        )
        # A second pass finds nothing left to do.
        assert await asweep_once() == ""

    @sync_to_async
    def check():
        request = RouteRequest.objects.get(ltp_id=asked)
        assert request.status == RequestStatus.ESCALATED
        assert request.tried == ["metrics-agent", "metrics-agent-b"]
        assert Escalation.objects.get(route_request=request).is_pending
        steps = Frame.objects.filter(
            coordination__key=KEY, sender="ltpdash", type="route_response"
        ).order_by("seq")
        assert [s.payload["branches"][0]["action"] for s in steps] == ["fallback", "escalate"]

    await check()
    verdict = await averified_trace()
    assert verdict.ok, verdict.why
