"""Waiting for what the gate causes on the server, and deciding it as an operator would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from ltpdash_client import Gate

from coordination.models import Escalation, EscalationStatus
from tests.factories import Operator

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


def gate_for(url: str, agents) -> Gate:
    return Gate(
        url,
        agents.triage_token,
        coordination=COORDINATION,
        name="triage-agent",
        role="refund-agent",
        intent="refund duplicated charges",
        guardrails=["no transfer without a human"],
        timeout=60,
    )


class Bank:
    """The function behind the gate, recording every time it really runs."""

    def __init__(self, gate: Gate):
        self.calls: list[tuple[str, int]] = []

        @gate.require_approval(action="transfer_money", reason="refund duplicated charge")
        def transfer(account: str, amount_eur: int) -> str:
            self.calls.append((account, amount_eur))
            return f"sent {amount_eur} EUR to {account}"

        self.transfer = transfer


@dataclass
class Transfer:
    gate: Gate
    bank: Bank
    call: Future[str]
    escalation: Escalation


@contextmanager
def transfer_waiting(url: str, agents) -> Iterator[Transfer]:
    """The bank's gated transfer of 5000 EUR to acme, called in a thread through a gate to
    `url` and waiting on the escalation it opened; the gate closes after the block."""
    with gate_for(url, agents) as gate, ThreadPoolExecutor(1) as pool:
        bank = Bank(gate)
        call = pool.submit(bank.transfer, "acme", 5000)
        yield Transfer(gate, bank, call, pending_escalation("transfer_money"))
