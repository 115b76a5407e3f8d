"""The review of the simulated incident (`manage.py simulate --once` against a real daphne and
sweeper): the escalation beside metrics-agent-b's guardrails in force, the human decision
with its note and operator."""

from __future__ import annotations

import html as htmllib

import pytest
from django.test import Client
from django.urls import reverse

from coordination.decisions import APPROVE, decide
from coordination.models import Escalation
from tests.factories import simulate_once
from tests.review_helpers import step_block
from tests.seed import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_review_of_the_simulated_incident_tells_why_metrics_agent_b_escalated(
    server_and_sweeper,
    operators,
):
    server, env, _ = server_and_sweeper
    simulate_once(server, env)
    escalation = Escalation.objects.get(coordination__key=KEY)
    assert decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call")
    escalation.refresh_from_db()

    client = Client()
    client.force_login(operators["vic"])
    body = htmllib.unescape(client.get(reverse("coordination-review", args=[KEY])).content.decode())

    escalated = step_block(body, escalation.frame.seq)
    assert "metrics-agent-b escalated to humans." in escalated
    assert "Reason (escalate): guardrail: cannot page DB" in escalated
    assert (
        "In force: metrics-agent-b was acting as “metrics-agent” with the intent “report queue "
        "metrics (standby)” under the guardrails “read-only”; “cannot page DB”"
    ) in escalated

    decision = step_block(body, escalation.decision_frame.seq)
    assert "alice approved the escalation." in decision
    assert "Note: page the DB on-call" in decision
    assert '<strong class="sender">human:alice</strong>' in decision

    # The ladder that led there reads as a story too: the silent specialist, the fallback.
    assert "ltpdash recorded that metrics-agent went from online to silent." in body
    assert "ltpdash fell back to another agent." in body
    assert "routed to metrics-agent-b" in body
