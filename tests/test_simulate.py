"""`manage.py simulate --once`: four real agents over real websockets play incident-4821
against a real daphne, with a real sweeper process noticing the silent specialist. It
returns with an escalation waiting for a human.

The server, the sweeper and the simulator are three processes sharing the test database, as
in the README's run command. They get a short heartbeat timeout so the silence shows within
seconds instead of half a minute.
"""

import re

import pytest

from coordination.decisions import APPROVE, decide
from coordination.models import (
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
    RequestStatus,
    RouteRequest,
)
from tests.factories import simulate_once, verified_trace
from tests.seed import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_simulate_once_leaves_an_incident_with_an_escalation_pending(server_and_sweeper, operators):
    server, env, sweep_log = server_and_sweeper
    run = simulate_once(server, env)
    assert "escalated" in run.stdout

    coordination = Coordination.objects.get(key=KEY)
    assert coordination.state == "diagnosis pending human approval"

    escalation = Escalation.objects.get(coordination=coordination)
    assert escalation.status == EscalationStatus.PENDING
    assert escalation.agent.name == "metrics-agent-b"
    assert escalation.reason == "guardrail: cannot page DB"
    # It says what approving it does (issue #11).
    assert escalation.proposed_action == "page_db_oncall"
    assert escalation.proposed_args == {"service": "orders-db"}

    # The silent specialist: noticed by the sweeper process, recorded, and routed around.
    assert "metrics-agent: silent" in sweep_log.read_text()
    chain = list(coordination.frames.order_by("seq"))
    silent = [f for f in chain if f.type == "presence" and f.payload["agent"] == "metrics-agent"]
    assert silent and silent[0].payload["presence"] == "silent"
    steps = [
        f.payload["branches"][0]
        for f in chain
        if f.sender == "ltpdash" and f.type == "route_response"
    ]
    assert steps[0] == {
        "action": "route",
        "reason": "need 'database' routed to db-agent by the routing table",
        "target": "db-agent",
    }
    fallback = next(s for s in steps if s["action"] == "fallback")
    assert re.fullmatch(
        r"metrics-agent silent since \d\d:\d\d:\d\d; routed to metrics-agent-b", fallback["reason"]
    ), fallback["reason"]
    assert silent[0].seq < next(f.seq for f in chain if f.payload.get("branches") == [fallback])

    requests = RouteRequest.objects.filter(coordination=coordination).order_by("created_at")
    assert [(r.assigned_to.name, r.status) for r in requests] == [
        ("db-agent", RequestStatus.ANSWERED),
        ("metrics-agent-b", RequestStatus.ANSWERED),
    ]
    # Every step of the triage agent carries the guardrails it declared.
    request_frame = requests[1].frame
    assert request_frame.orientation.payload["guardrails"] == ["no production writes"]

    verdict = verified_trace()
    assert verdict.ok, verdict.why
    assert verdict.entries == Frame.objects.filter(coordination=coordination).count()

    # ... and a human can decide what it left waiting.
    assert decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call").decided
