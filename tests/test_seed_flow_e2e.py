"""The seed flow (PROTOCOL §2) over real websockets against a real daphne process."""

import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from ltpdash_client import LtpClient

from coordination.models import (
    Coordination,
    Escalation,
    Frame,
    Orientation,
    RequestStatus,
    RouteRequest,
)
from coordination.trace import verify_trace
from tests.seed import SEED_REQUEST, SEED_RESPONSE

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _export(key: str) -> str:
    out = io.StringIO()
    call_command("exporttrace", key, stdout=out)
    return out.getvalue()


async def test_seed_flow_ends_as_one_verifiable_coordination(live, agents):
    triage = LtpClient(
        live.agent_url, agents.triage_token, "triage-agent", coordination_id="incident-4821"
    )
    metrics = LtpClient(
        live.agent_url, agents.metrics_token, "metrics-agent", coordination_id="incident-4821"
    )
    async with triage, metrics:
        acks = await triage.send(SEED_REQUEST)
        assert [a["type"] for a in acks] == ["ack", "ack"]
        forwarded = await metrics.receive(type="route_request")
        assert forwarded["from"] == "triage-agent"
        assert forwarded["payload"]["need"] == "queue depth and error rate"

        acks = await metrics.send(SEED_RESPONSE)
        assert [a["type"] for a in acks] == ["ack", "ack"]
        answer = await triage.receive(
            type="route_response", where=lambda f: f["from"] == "metrics-agent"
        )
        assert answer["payload"]["result"] == {"queue_depth": 1240, "error_rate": 0.07}

        # Checked while both agents are still connected: on disconnect daphne appends their
        # presence changes, which would race the export against the frame count.
        @sync_to_async
        def check():
            assert Coordination.objects.count() == 1
            coordination = Coordination.objects.get(key="incident-4821")
            assert coordination.state == "diagnosis pending human approval"
            frames = list(coordination.frames.order_by("seq"))
            kinds = [(f.sender, f.type) for f in frames]
            assert ("triage-agent", "orientation") in kinds
            assert ("triage-agent", "route_request") in kinds
            assert ("metrics-agent", "route_response") in kinds
            assert ("metrics-agent", "focus_snapshot") in kinds
            response = next(f for f in frames if f.type == "route_response")
            assert response.payload["result"]["queue_depth"] == 1240  # raw payload kept
            orientation = Orientation.objects.get(coordination=coordination, agent=agents.triage)
            assert orientation.intent == "diagnose backlog"
            assert orientation.guardrails == ["no production writes"]
            request = RouteRequest.objects.get(coordination=coordination)
            assert request.requester == agents.triage
            assert request.assigned_to == agents.metrics
            assert request.status == RequestStatus.ANSWERED
            assert request.response_frame == response
            escalation = Escalation.objects.get(coordination=coordination)
            assert escalation.reason == "guardrail: cannot page DB"
            assert escalation.agent == agents.metrics
            assert escalation.frame == response
            verdict = verify_trace(_export("incident-4821").splitlines())
            assert verdict.ok, verdict.why
            assert verdict.entries == Frame.objects.filter(coordination=coordination).count()

        await check()
