"""The story of a coordination, for a reviewer: every step written as sentences, with the
sender, the reasons it carried and the orientation in force for the sender at that moment.

The chain is replayed in order, so the orientation in force at a step is the sender's last
orientation frame before it (the same one ingest records on the frame), for native and
imported chains alike. Payloads are read leniently (both LTP dialects: branches as a list or
an object keyed primary/recover/explore; focus_snapshot with health or focus/signal), never
trusted: everything comes out as plain strings that templates autoescape.

Layer: just above models (reads Coordination and Frame only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coordination.models import HUMAN_PREFIX, Coordination, Frame
from coordination.schemas import LTPDASH

HUMANS = "humans"
UNNAMED = "(unnamed sender)"
# Kinds a reviewer filters on ("only escalations and decisions") and the picture draws.
ESCALATION, DECISION, FALLBACK, HANDOFF = "escalation", "decision", "fallback", "handoff"
REQUEST, RESPONSE, ROUTE, ORIENTATION = "request", "response", "route", "orientation"
SNAPSHOT, PRESENCE, OTHER = "snapshot", "presence", "other"


def text(value: Any) -> str:
    """A JSON value as one line of text: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def quoted(value: Any) -> str:
    return f"“{text(value)}”"


def lane_of(name: str) -> str:
    """The swimlane a participant belongs to: one per agent, one for humans, one for ltpdash."""
    if name.startswith(HUMAN_PREFIX) or name == "human":
        return HUMANS
    return name or UNNAMED


@dataclass(frozen=True)
class OrientationInForce:
    role: str
    intent: str
    guardrails: tuple[str, ...]
    seq: int  # the orientation frame that set it

    @classmethod
    def of(cls, payload: Mapping[str, Any], seq: int) -> OrientationInForce:
        guardrails = payload.get("guardrails") or []
        if not isinstance(guardrails, list):
            guardrails = [guardrails]
        return cls(
            role=text(payload.get("role") or payload.get("identity") or ""),
            intent=text(payload.get("intent") or payload.get("status") or ""),
            guardrails=tuple(text(g) for g in guardrails),
            seq=seq,
        )

    def sentence(self, who: str) -> str:
        parts = [f"{who} was acting as {quoted(self.role)}" if self.role else f"{who} was acting"]
        parts.append(f"with the intent {quoted(self.intent)}" if self.intent else "with no intent")
        if self.guardrails:
            rails = "; ".join(quoted(g) for g in self.guardrails)
            parts.append(f"under the guardrail{'s' if len(self.guardrails) > 1 else ''} {rails}")
        else:
            parts.append("under no guardrails")
        return " ".join(parts) + f" (orientation of step #{self.seq})."


@dataclass
class Step:
    seq: int
    when: datetime | None
    sender: str
    lane: str
    type: str
    frame_id: str
    kind: str = OTHER
    headline: str = ""
    reasons: list[str] = field(default_factory=list)
    orientation: OrientationInForce | None = None
    # For an orientation frame: the orientation it replaced (None when it is the first).
    previous_orientation: OrientationInForce | None = None
    orientation_changed: bool = False
    target: str = ""  # the lane the step points at (arrows in the picture)
    raw: str = ""

    @property
    def anchor(self) -> str:
        return f"step-{self.seq}"

    @property
    def is_escalation_or_decision(self) -> bool:
        return self.kind in (ESCALATION, DECISION)

    @property
    def orientation_sentence(self) -> str:
        if self.orientation is None:
            return ""
        return self.orientation.sentence(self.sender or UNNAMED)

    @property
    def previous_orientation_sentence(self) -> str:
        if self.previous_orientation is None:
            return ""
        return self.previous_orientation.sentence(self.sender or UNNAMED)

    def searchable(self) -> str:
        return " ".join([self.headline, *self.reasons]).casefold()


@dataclass(frozen=True)
class Story:
    coordination: Coordination
    steps: list[Step]
    lanes: list[str]

    @property
    def agents(self) -> list[str]:
        return [lane for lane in self.lanes if lane not in (HUMANS, LTPDASH)]

    @property
    def types(self) -> list[str]:
        return sorted({step.type for step in self.steps})


def branches(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """route_response branches in either dialect, as dicts (an object keyed
    primary/recover/explore becomes a list whose items carry their key as `id`)."""
    found = payload.get("branches")
    if isinstance(found, dict):
        found = [
            {"id": key, **value} if isinstance(value, dict) else {"id": key, "value": value}
            for key, value in found.items()
        ]
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def branch_words(branch: Mapping[str, Any]) -> str:
    name = branch.get("action") or branch.get("id") or branch.get("path") or "branch"
    extras = [f"{key} {text(branch[key])}" for key in ("confidence", "status") if key in branch]
    return text(name) + (f" ({', '.join(extras)})" if extras else "")


def story(coordination: Coordination) -> Story:
    """Every step of the coordination's chain, in order, written for a reviewer."""
    frames = (
        Frame.objects.filter(coordination=coordination)
        .order_by("seq")
        .only("seq", "ts", "received_at", "sender", "type", "raw", "ltp_id")
    )
    in_force: dict[str, OrientationInForce] = {}
    senders: dict[str, str] = {}  # LTP id -> sender, to point responses at their requester
    steps: list[Step] = []
    lanes: dict[str, None] = {LTPDASH: None}
    for frame in frames.iterator(chunk_size=1000):
        data = frame.data if isinstance(frame.data, dict) else {}
        step = Step(
            seq=frame.seq or 0,
            when=frame.ts or frame.received_at,
            sender=frame.sender,
            lane=lane_of(frame.sender),
            type=frame.type,
            frame_id=text(data.get("id", "")),
            raw=json.dumps(data, ensure_ascii=False, indent=2),
        )
        describe(step, data, in_force, senders)
        if isinstance(data.get("id"), str):
            senders[data["id"]] = frame.sender
        lanes.setdefault(step.lane, None)
        if step.target:
            lanes.setdefault(step.target, None)
        steps.append(step)
    ordered = [LTPDASH, *[lane for lane in lanes if lane not in (LTPDASH, HUMANS)], HUMANS]
    return Story(coordination, steps, ordered)


@dataclass(frozen=True)
class ReviewFilters:
    """The review's filters, read from and written to the URL so a reload or a shared link
    keeps them."""

    agent: str = ""
    type: str = ""
    only_decisions: bool = False
    q: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ReviewFilters:
        return cls(
            agent=(query.get("agent") or "")[:200],
            type=(query.get("type") or "")[:100],
            only_decisions=query.get("only") == "decisions",
            q=(query.get("q") or "").strip()[:200],
        )

    @property
    def active(self) -> bool:
        return bool(self.agent or self.type or self.only_decisions or self.q)

    def keep(self, step: Step) -> bool:
        if self.agent and self.agent not in (step.lane, step.sender):
            return False
        if self.type and step.type != self.type:
            return False
        if self.only_decisions and not step.is_escalation_or_decision:
            return False
        return not self.q or self.q.casefold() in step.searchable()

    def apply(self, steps: Iterable[Step]) -> list[Step]:
        return [step for step in steps if self.keep(step)]


# --- the sentences ------------------------------------------------------------------------------


def describe(
    step: Step,
    data: Mapping[str, Any],
    in_force: dict[str, OrientationInForce],
    senders: Mapping[str, str],
) -> None:
    """Fill in the step's kind, headline, reasons, target and orientation in force."""
    payload = data.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    who = step.sender or UNNAMED
    if step.type == "orientation":
        _orientation(step, payload, in_force, who)
        return
    step.orientation = in_force.get(step.sender)
    to = data.get("to")
    if isinstance(to, str) and to:
        step.target = lane_of(to)
    if step.type == "route_request":
        _request(step, payload, who)
    elif step.type == "route_response":
        _response(step, payload, who, senders)
    elif step.type == "focus_snapshot":
        _snapshot(step, payload, who)
    elif step.type == "presence":
        step.kind = PRESENCE
        step.headline = (
            f"{who} recorded that {text(payload.get('agent', '?'))} went from "
            f"{text(payload.get('previous', '?'))} to {text(payload.get('presence', '?'))}."
        )
        _reason(step, payload.get("reason"))
    elif step.type == "hello":
        step.headline = f"{who} said hello" + (
            f" as {quoted(payload['role'])}." if payload.get("role") else "."
        )
    else:
        step.headline = f"{who} sent a {step.type} frame."
        if payload:
            step.reasons.append(f"It said: {text(payload)}")
    if step.target == step.lane:
        step.target = ""


def _reason(step: Step, reason: Any, label: str = "Reason") -> None:
    if reason not in (None, "", [], {}):
        step.reasons.append(f"{label}: {text(reason)}")


def _orientation(step: Step, payload: Mapping[str, Any], in_force: dict, who: str) -> None:
    step.kind = ORIENTATION
    new = OrientationInForce.of(payload, step.seq)
    old = in_force.get(step.sender)
    step.orientation, step.previous_orientation = new, old
    in_force[step.sender] = new
    if old is None:
        step.headline = f"{who} declared its orientation."
        return
    step.orientation_changed = True
    changes = [
        f"{label} from {_or_none(before)} to {_or_none(after)}"
        for label, before, after in (
            ("role", old.role, new.role),
            ("intent", old.intent, new.intent),
            ("guardrails", "; ".join(old.guardrails), "; ".join(new.guardrails)),
        )
        if before != after
    ]
    step.headline = f"{who} changed its orientation: " + (
        "; ".join(changes) + "." if changes else "restated, unchanged."
    )


def _or_none(value: str) -> str:
    return quoted(value) if value else "none"


def _request(step: Step, payload: Mapping[str, Any], who: str) -> None:
    step.kind = REQUEST
    target = payload.get("target")
    if isinstance(target, str) and target:
        step.target = lane_of(target)
    what = payload.get("need") or payload.get("intent") or payload.get("goal")
    named = f"{text(target)}" if target else (step.target or "whoever the routing table names")
    step.headline = f"{who} asked {named}" + (f" for {quoted(what)}." if what else " for help.")
    for key in ("action", "targetState"):
        if payload.get(key):
            step.reasons.append(f"Wants done: {text(payload[key])}")
    if step.target == HUMANS:
        step.kind = ESCALATION
        step.headline = f"{who} asked humans" + (f" for {quoted(what)}." if what else ".")
    _reason(step, payload.get("constraints"), "Constraints")


def _response(step: Step, payload: Mapping[str, Any], who: str, senders: Mapping) -> None:
    found = branches(payload)
    actions = {text(b.get("action", "")) for b in found}
    replied = payload.get("in_reply_to")
    if isinstance(replied, str) and replied in senders and not step.target:
        step.target = lane_of(senders[replied])
    if step.lane == HUMANS or actions & {"approve", "reject"}:
        _decision(step, payload, found, who)
    elif "escalate" in actions:
        step.kind = ESCALATION
        step.target = HUMANS
        step.headline = f"{who} escalated to humans."
    elif "fallback" in actions:
        step.kind = FALLBACK
        step.headline = f"{who} fell back to another agent."
    elif "route" in actions:
        step.kind = ROUTE
        step.headline = f"{who} routed a request."
    else:
        step.kind = RESPONSE
        step.headline = f"{who} answered" + (f" {step.target}." if step.target else ".")
    for branch in found:
        if step.kind != DECISION:
            _reason(step, branch.get("reason"), f"Reason ({branch_words(branch)})")
            _reason(step, branch.get("rule_id"), "LTP rule")
            _reason(step, branch.get("proposal"), "Proposed if approved")
        if branch.get("reason") in (None, "") and step.kind == RESPONSE:
            step.reasons.append(f"Branch: {branch_words(branch)}")
    _reason(step, payload.get("reason"))
    _reason(step, payload.get("decision"), "Decision")
    _reason(step, payload.get("notes"), "Notes")
    result = payload.get("result")
    if isinstance(result, dict) and result:
        step.reasons.append("Result: " + ", ".join(f"{k} = {text(v)}" for k, v in result.items()))
    if isinstance(replied, str):
        step.reasons.append(f"In reply to {replied}.")


def _decision(step: Step, payload: Mapping[str, Any], found: list, who: str) -> None:
    step.kind = DECISION
    branch: dict[str, Any] = next(
        (b for b in found if b.get("action") in ("approve", "reject")), {}
    )
    verdict = {"approve": "approved", "reject": "rejected"}.get(
        text(branch.get("action")), "decided"
    )
    by = text(branch.get("decided_by") or who.removeprefix(HUMAN_PREFIX))
    step.headline = f"{by} {verdict} the escalation."
    note = branch.get("reason")
    step.reasons.append(f"Note: {text(note)}" if note else "No note.")
    if branch.get("approvers"):
        step.reasons.append("Approved by " + ", ".join(text(a) for a in branch["approvers"]))
    _reason(step, branch.get("amended"), "Amended")
    _reason(step, payload.get("instructions"), "Instructions to the agent")


def _snapshot(step: Step, payload: Mapping[str, Any], who: str) -> None:
    handoff = payload.get("handoff")
    if isinstance(handoff, dict) or payload.get("owner"):
        step.kind = HANDOFF
        step.target = HUMANS
        owner = text(payload.get("owner") or "").removeprefix(HUMAN_PREFIX)
        step.headline = f"{who} handed the coordination to {owner or 'someone'}."
        _reason(step, payload.get("reason"))
        return
    step.kind = SNAPSHOT
    state = payload.get("state") or payload.get("focus")
    health = payload.get("health") or payload.get("signal")
    step.headline = f"{who} recorded the joint state" + (f": {quoted(state)}" if state else "")
    step.headline += f" (health {text(health)})." if health else "."
    _reason(step, payload.get("reason"))
    rest = {
        k: v
        for k, v in payload.items()
        if k not in ("state", "focus", "health", "signal", "reason", "coordination_id")
    }
    if rest:
        step.reasons.append(f"Also recorded: {text(rest)}")
