"""Gate a LangGraph node (or a tool call) through ltpdash, without `interrupt`.

    from ltpdash_client.langgraph import gated_node

    def transfer(state: State) -> dict:
        return {"result": bank.transfer(state["account"], state["amount_eur"])}

    graph.add_node("transfer", gated_node(gate, transfer, action="transfer_money",
                                          reason="refund duplicated charge",
                                          keys=["account", "amount_eur"]))

The node waits on the gate (a blocking call in a sync graph, an await in an async one); the
arguments it proposes are `keys` read from the state. Approved, the node runs on the state
with the approver's amended arguments, and those arguments flow into the graph's state with
the node's own update, plus `approval` (who, note, amended). Rejected, the node does not run
and the state gets `approval` with `approved: False` and the note (declare an `approval` key
in the state schema, or pass another `approval_key`). For a tool call, decorate the tool's
function with `gate.require_approval(...)`.

Needs `ltpdash-client[langgraph]` for the graph itself; this module imports nothing from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ltpdash_client.gate import Decision, Gate, Rejected

Node = Callable[[Any], Any]


def _approval(decision: Decision | None, rejected: Rejected | None) -> dict[str, Any]:
    if rejected is not None:
        return {
            "approved": False,
            "decided_by": rejected.decided_by,
            "note": rejected.note,
            "instructions": rejected.instructions,
        }
    assert decision is not None
    return {
        "approved": True,
        "decided_by": decision.decided_by,
        "note": decision.note,
        "instructions": decision.instructions,
        "amended": decision.amended,
        "args": decision.args,
    }


def gated_node(
    gate: Gate,
    node: Node,
    *,
    action: str,
    reason: str,
    keys: Iterable[str],
    approval_key: str = "approval",
) -> Node:
    """`node`, asking ltpdash first; see the module docstring."""
    keys = list(keys)

    def proposed(state: Mapping[str, Any]) -> dict[str, Any]:
        return {key: state[key] for key in keys if key in state}

    def update(decision: Decision, result: Any) -> dict[str, Any]:
        return {**decision.args, **(result or {}), approval_key: _approval(decision, None)}

    if inspect.iscoroutinefunction(node):

        async def agated(state: Mapping[str, Any]) -> dict[str, Any]:
            try:
                decision = await gate.arequest(action, proposed(state), reason)
            except Rejected as rejected:
                return {approval_key: _approval(None, rejected)}
            return update(decision, await node({**state, **decision.args}))

        return agated

    def gated(state: Mapping[str, Any]) -> dict[str, Any]:
        try:
            decision = gate.request(action, proposed(state), reason)
        except Rejected as rejected:
            return {approval_key: _approval(None, rejected)}
        return update(decision, node({**state, **decision.args}))

    return gated
