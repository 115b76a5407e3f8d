"""Waiting for what the gate causes on the server, and deciding it as an operator would."""

from __future__ import annotations

import json
import time

from coordination.models import Escalation, EscalationStatus
from tests.console_helpers import Operator

COORDINATION = "refunds-7"


def pending_escalation(action: str, timeout: float = 20) -> Escalation:
    """The escalation a gated call opened (the test's side waits on the database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        escalation = Escalation.objects.filter(
            status=EscalationStatus.PENDING, proposed_action=action
        ).first()
        if escalation is not None:
            return escalation
        time.sleep(0.05)
    raise AssertionError(f"no escalation for {action} within {timeout}s")


def decide(operator: Operator, escalation: Escalation, verdict: str, note: str, **amended):
    data = {"verdict": verdict, "note": note}
    if amended:
        data["amended_args"] = json.dumps({**escalation.proposed_args, **amended})
    reply = operator.post(f"/escalations/{escalation.pk}/decide/", data, htmx=True)
    assert reply.status == 200, reply.body
    return reply
