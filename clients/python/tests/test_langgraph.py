"""A real LangGraph graph of plain-function nodes with a node gated through ltpdash: it
completes with the approver's amended arguments in its final state (issue #14, acceptance 5)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

import pytest
from asgiref.sync import sync_to_async
from gate_helpers import COORDINATION, decide, pending_escalation
from langgraph.graph import END, START, StateGraph
from ltpdash_client import Gate
from ltpdash_client.langgraph import gated_node

from tests.factories import Operator

pytestmark = [pytest.mark.e2e]


class Refund(TypedDict, total=False):
    ticket: str
    account: str
    amount_eur: int
    result: str
    approval: dict[str, Any]


def read_ticket(state: Refund) -> Refund:
    return {"account": "acme", "amount_eur": 5000}


def transfer(state: Refund) -> Refund:
    return {"result": f"sent {state['amount_eur']} EUR to {state['account']}"}


def build(gate: Gate):
    graph = StateGraph(Refund)
    graph.add_node("read_ticket", read_ticket)
    graph.add_node(
        "transfer",
        gated_node(
            gate,
            transfer,
            action="transfer_money",
            reason="refund duplicated charge",
            keys=["account", "amount_eur"],
        ),
    )
    graph.add_edge(START, "read_ticket")
    graph.add_edge("read_ticket", "transfer")
    graph.add_edge("transfer", END)
    return graph.compile()


def _gate(live, agents) -> Gate:
    return Gate(live.agent_url, agents.triage_token, coordination=COORDINATION, timeout=60)


def test_a_gated_node_completes_with_the_amended_arguments_in_the_final_state(
    live, agents, operators
):
    with _gate(live, agents) as gate, ThreadPoolExecutor(1) as pool:
        run = pool.submit(build(gate).invoke, {"ticket": "T-12"})
        escalation = pending_escalation("transfer_money")
        assert escalation.proposed_args == {"account": "acme", "amount_eur": 5000}
        decide(
            Operator(live.http, operators["alice"]), escalation, "approve", "4k", amount_eur=4000
        )

        final = run.result(timeout=30)

    assert final["amount_eur"] == 4000
    assert final["result"] == "sent 4000 EUR to acme"
    assert final["approval"]["approved"] and final["approval"]["amended"]
    assert final["approval"]["decided_by"] == "alice" and final["approval"]["note"] == "4k"


def test_a_rejected_node_does_not_run_and_the_state_says_why(live, agents, operators):
    with _gate(live, agents) as gate, ThreadPoolExecutor(1) as pool:
        run = pool.submit(build(gate).invoke, {"ticket": "T-13"})
        escalation = pending_escalation("transfer_money")
        decide(Operator(live.http, operators["bob"]), escalation, "reject", "duplicate ticket")

        final = run.result(timeout=30)

    assert "result" not in final and final["amount_eur"] == 5000
    assert final["approval"] == {
        "approved": False,
        "decided_by": "bob",
        "note": "duplicate ticket",
        "instructions": "",
    }


async def test_an_async_graph_waits_on_the_gate_too(live, agents, operators):
    async def atransfer(state: Refund) -> Refund:
        return transfer(state)

    graph = StateGraph(Refund)
    graph.add_node("read_ticket", read_ticket)
    gate = _gate(live, agents)
    graph.add_node(
        "transfer",
        gated_node(gate, atransfer, action="transfer_money", reason="r", keys=["account"]),
    )
    graph.add_edge(START, "read_ticket")
    graph.add_edge("read_ticket", "transfer")
    try:
        run = asyncio.ensure_future(graph.compile().ainvoke({"ticket": "T-14"}))
        escalation = await sync_to_async(pending_escalation)("transfer_money")
        alice = await sync_to_async(Operator)(live.http, operators["alice"])
        await sync_to_async(decide)(alice, escalation, "approve", "ok", account="acme-eu")
        final = await asyncio.wait_for(run, 30)
    finally:
        await sync_to_async(gate.close)()
    assert final["result"] == "sent 5000 EUR to acme-eu"
