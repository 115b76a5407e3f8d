"""The gate in one line, against a real daphne: a gated function waits for a human, runs
once with the approver's amended arguments, never runs when rejected, and survives a daphne
restart while it waits (issue #14, acceptance 2-4)."""

from __future__ import annotations

import asyncio
import io
import signal

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from gate_helpers import COORDINATION, decide, gate_for, pending_escalation, transfer_waiting
from ltpdash_client import Rejected

from coordination.models import HUMAN_PREFIX, Frame
from coordination.trace import verify_trace
from tests.factories import Operator, start_daphne, stop_daphne

pytestmark = [pytest.mark.e2e]


def _export() -> str:
    out = io.StringIO()
    call_command("exporttrace", COORDINATION, stdout=out)
    return out.getvalue()


def test_a_gated_call_runs_once_with_the_amended_arguments(live, agents, operators):
    alice = Operator(live.http, operators["alice"])
    with transfer_waiting(live.agent_url, agents) as transfer:
        bank, call, escalation = transfer.bank, transfer.call, transfer.escalation
        page = alice.get("/escalations/").body
        assert (
            "If you approve: <strong>triage-agent</strong> will <code>transfer_money</code> "
            "(account: acme, amount_eur: 5000)" in page
        )
        assert "refund duplicated charge" in page
        assert not bank.calls  # nothing ran before the decision
        decide(alice, escalation, "approve", "only the duplicated part", amount_eur=4000)

        assert call.result(timeout=30) == "sent 4000 EUR to acme"
        assert bank.calls == [("acme", 4000)]

        frames = Frame.objects.filter(coordination__key=COORDINATION)
        request = frames.get(type="route_request")
        assert request.payload["action"] == "transfer_money"
        assert request.payload["args"] == {"account": "acme", "amount_eur": 5000}
        decision = frames.get(sender=HUMAN_PREFIX + "alice")
        branch = decision.payload["branches"][0]
        assert branch["args"] == {"account": "acme", "amount_eur": 5000}
        assert branch["amended_args"] == {"account": "acme", "amount_eur": 4000}
        verdict = verify_trace(_export().splitlines())
        assert verdict.ok, verdict.why
    assert bank.calls == [("acme", 4000)]  # once, even after the gate closed


def test_a_rejected_call_never_runs_and_carries_the_note(live, agents, operators):
    alice = Operator(live.http, operators["alice"])
    with transfer_waiting(live.agent_url, agents) as transfer:
        bank, call, escalation = transfer.bank, transfer.call, transfer.escalation
        alice.post(
            f"/escalations/{escalation.pk}/decide/",
            {
                "verdict": "reject",
                "note": "already refunded on Monday",
                "instructions": "close the ticket",
            },
            htmx=True,
        )

        with pytest.raises(Rejected) as rejected:
            call.result(timeout=30)
    assert rejected.value.note == "already refunded on Monday"
    assert rejected.value.instructions == "close the ticket"
    assert rejected.value.decided_by == "alice"
    assert bank.calls == []


async def test_arequest_from_async_code_returns_the_decision(live, agents, operators):
    gate = gate_for(live.agent_url, agents)
    try:
        asked = gate.arequest("place_order", {"sku": "A-1", "qty": 2}, "restock")
        task = asyncio.ensure_future(asked)
        escalation = await sync_to_async(pending_escalation)("place_order")
        alice = await sync_to_async(Operator)(live.http, operators["alice"])
        await sync_to_async(decide)(alice, escalation, "approve", "go ahead")
        decision = await asyncio.wait_for(task, 30)
    finally:
        await sync_to_async(gate.close)()
    assert decision.approved and decision.decided_by == "alice" and decision.note == "go ahead"
    assert decision.args == {"sku": "A-1", "qty": 2} and not decision.amended


@pytest.mark.django_db(transaction=True)
def test_a_call_waiting_while_daphne_restarts_completes_once_after_the_decision(
    agents, operators, tmp_path
):
    first = start_daphne(tmp_path)
    second = None
    try:
        with transfer_waiting(first.agent_url, agents) as transfer:
            gate, bank, call = transfer.gate, transfer.bank, transfer.call
            escalation = transfer.escalation

            # The server dies under the waiting call, and a new one starts on the same port.
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            second = start_daphne(tmp_path, port=first.port)
            decide(Operator(second.http, operators["alice"]), escalation, "approve", "ok")

            assert call.result(timeout=60) == "sent 5000 EUR to acme"
            assert gate.reconnects >= 1
        assert bank.calls == [("acme", 5000)]
    finally:
        stop_daphne(first)
        if second is not None:
            stop_daphne(second)
