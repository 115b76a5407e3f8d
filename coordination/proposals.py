"""What approving an escalation does: the proposal an agent states, and the arguments an
approver may amend before approving.

An escalating branch may carry `proposal: {"action": ..., "args": {...}}`; a route_request
may carry `action` and `args` (how `ltpdash_client.Gate` sends a call). Both are agent text:
read leniently here, shown autoescaped, never trusted. The decision's approve branch carries
the original `args` and, when the approver changed them, `amended_args` (the original stays
in the chain beside the amendment).

Layer: with models (reads stored frames; imported by decisions and the views).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coordination.models import Escalation, Frame, RouteRequest
from coordination.schemas import RouteRequestView, RouteResponseView


@dataclass(frozen=True)
class Proposal:
    action: str
    args: dict[str, Any] | None


NONE = Proposal("", None)


def _read(source: dict[str, Any]) -> Proposal:
    action = source.get("action")
    args = source.get("args")
    return Proposal(
        action[:200] if isinstance(action, str) else "",
        args if isinstance(args, dict) else None,
    )


def proposal_for(frame: Frame, branch_index: int, request: RouteRequest | None) -> Proposal:
    """What the agent says it will do if approved: the escalating branch's `proposal`, else
    the `action` / `args` of the request that escalated."""
    if branch_index >= 0:
        view = frame.view
        branches = view.branches if isinstance(view, RouteRequestView | RouteResponseView) else []
        if not 0 <= branch_index < len(branches):
            return NONE
        proposal = (branches[branch_index].model_extra or {}).get("proposal")
        return _read(proposal) if isinstance(proposal, dict) else NONE
    if request is not None:
        asked = request.frame.view
        if isinstance(asked, RouteRequestView):
            return Proposal((asked.action or "")[:200], asked.args)
    return NONE


def escalation_fields(
    frame: Frame, branch_index: int, request: RouteRequest | None
) -> dict[str, Any]:
    """The Escalation fields that record the proposal (for `Escalation.objects.create`)."""
    proposal = proposal_for(frame, branch_index, request)
    return {"proposed_action": proposal.action, "proposed_args": proposal.args}


def decision_args(
    escalation: Escalation, verdict: str, amended_args: dict[str, Any] | None
) -> dict[str, Any]:
    """The fields an approve branch gains: the original `args` and, if they differ, the
    approver's `amended_args`."""
    if verdict != "approve":
        return {}
    fields: dict[str, Any] = {}
    if escalation.proposed_args is not None:
        fields["args"] = escalation.proposed_args
    if amended_args is not None and amended_args != escalation.proposed_args:
        fields["amended_args"] = amended_args
    return fields


class InvalidArgs(ValueError):
    pass


def parse_args(text: str) -> dict[str, Any] | None:
    """An approver's amended arguments from the card's JSON textarea; None when left empty.
    Any JSON object is accepted (the keys need not match the original)."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"The arguments are not valid JSON ({exc.msg}, line {exc.lineno})."
        raise InvalidArgs(message) from None
    if not isinstance(value, dict):
        raise InvalidArgs('The arguments must be a JSON object, e.g. {"amount_eur": 4000}.')
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def args_summary(args: dict[str, Any] | None) -> str:
    """`{"service": "orders-db", "n": 2}` → `service: orders-db, n: 2`."""
    return ", ".join(f"{key}: {as_text(value)}" for key, value in (args or {}).items())


def args_diff(original: dict[str, Any] | None, amended: dict[str, Any]) -> list[str]:
    """What the approver changed, one line per key: `amount_eur: 5000 → 4000`."""
    original = original or {}
    lines = []
    for key in dict.fromkeys([*original, *amended]):
        if key not in amended:
            lines.append(f"{key}: {as_text(original[key])} → (removed)")
        elif key not in original:
            lines.append(f"{key}: (new) {as_text(amended[key])}")
        elif original[key] != amended[key]:
            lines.append(f"{key}: {as_text(original[key])} → {as_text(amended[key])}")
    return lines
