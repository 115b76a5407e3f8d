"""The ladder in-process: how a request finds its agent, and what happens around the edges
(unknown names, requests to humans, late answers)."""

import pytest

from coordination.ingest import ingest
from coordination.models import (
    Agent,
    Delivery,
    Escalation,
    Presence,
    RequestStatus,
    RouteRequest,
    RoutingRule,
)
from tests.conftest import live_connection

pytestmark = pytest.mark.django_db

KEY = "incident-4821"


def frame(frame_id, type_, payload):
    return {"v": "0.1", "id": frame_id, "ts": 1764000000000, "type": type_,
            "coordination_id": KEY, "payload": payload}  # fmt: skip


def send(agent, data):
    outcomes = ingest(agent, data)
    assert all(o.error is None for o in outcomes)


def ask(agent, payload, frame_id="req-1") -> RouteRequest:
    send(agent, frame(frame_id, "route_request", payload))
    return RouteRequest.objects.get(requester=agent, ltp_id=frame_id)


def online(*names: str) -> list[Agent]:
    found = []
    for name in names:
        agent = Agent.objects.filter(name=name).first() or Agent.create_with_token(name)[0]
        Agent.objects.filter(pk=agent.pk).update(presence=Presence.ONLINE)
        live_connection(agent)
        found.append(agent)
    return found


def steps(request: RouteRequest) -> list[dict]:
    frames = request.coordination.frames.filter(sender="ltpdash", type="route_response")
    return [f.payload["branches"][0] for f in frames.order_by("seq")]


def test_request_by_need_goes_to_the_first_online_agent_of_its_rule(agents):
    (db_agent,) = online("db-agent")
    RoutingRule.objects.create(need="database", agents=["db-agent"])

    request = ask(agents.triage, {"need": " Database "})

    assert request.assigned_to == db_agent
    assert Delivery.objects.filter(agent=db_agent, frame=request.frame).exists()
    assert steps(request) == [
        {
            "action": "route",
            "reason": "need ' Database ' routed to db-agent by the routing table",
            "target": "db-agent",
        }
    ]


def test_request_for_a_need_without_a_rule_goes_to_humans(agents):
    request = ask(agents.triage, {"need": "astrology"})

    assert request.status == RequestStatus.ESCALATED
    assert Escalation.objects.get(route_request=request).reason == (
        "no route for need 'astrology'; no fallback left; escalated to humans"
    )


def test_request_naming_an_unknown_agent_says_so_and_falls_back(agents):
    online("metrics-agent")
    RoutingRule.objects.create(need="metrics", agents=["metrics-agnet", "metrics-agent"])

    request = ask(agents.triage, {"target": "metrics-agnet"})

    assert request.assigned_to.name == "metrics-agent"
    assert steps(request)[0]["reason"] == "no agent named metrics-agnet; routed to metrics-agent"


def test_fallback_never_sends_a_request_back_to_its_requester(agents):
    RoutingRule.objects.create(need="metrics", agents=["metrics-agent", "triage-agent"])

    request = ask(agents.triage, {"target": "metrics-agent"})

    assert request.status == RequestStatus.ESCALATED
    assert not Delivery.objects.filter(agent=agents.triage, frame=request.frame).exists()


def test_request_to_human_is_an_escalation_at_once(agents):
    request = ask(agents.triage, {"target": "human", "need": "may I restart the consumer?"})

    escalation = Escalation.objects.get(route_request=request)
    assert escalation.reason == "may I restart the consumer?"
    assert escalation.rule_id == ""


def test_a_late_answer_is_forwarded_but_does_not_reopen_the_request(agents):
    online("metrics-agent", "metrics-agent-b")
    request = ask(agents.triage, {"target": "metrics-agent"})
    # metrics-agent-b answered first (say, after a fallback) ...
    RouteRequest.objects.filter(pk=request.pk).update(
        assigned_to=Agent.objects.get(name="metrics-agent-b")
    )
    b = Agent.objects.get(name="metrics-agent-b")
    send(b, frame("b-1", "route_response", {"in_reply_to": "req-1", "result": {"n": 2}}))
    request.refresh_from_db()
    first_answer = request.response_frame

    # ... then metrics-agent's answer arrives late.
    send(agents.metrics, frame("m-1", "route_response", {"in_reply_to": "req-1", "result": {}}))

    request.refresh_from_db()
    assert request.status == RequestStatus.ANSWERED
    assert request.response_frame == first_answer
    late = request.coordination.frames.get(sender="metrics-agent", ltp_id="m-1")
    assert Delivery.objects.filter(agent=agents.triage, frame=late).exists()
