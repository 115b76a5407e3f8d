"""What the console shows, read from the models with a bounded number of queries.

Everything an agent wrote reaches the templates as plain strings or lists of strings:
templates autoescape them, and nothing here marks text safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet

from coordination.decisions import agents_in
from coordination.models import (
    Agent,
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
    Orientation,
    RequestStatus,
    RouteRequest,
)

TIMELINE_PAGE = 50
SUMMARY_LENGTH = 200
# Escalations shown on a coordination's page (all pending ones among them, newest decided).
DETAIL_ESCALATIONS = 50
INBOX_LIMIT = 100


def as_text(value: Any) -> str:
    """A JSON value as one line of text (strings as they are, the rest as JSON)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _clip(text: str, length: int = SUMMARY_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def summary(frame: Frame) -> str:
    """One line saying what a frame is about, for the timeline."""
    payload = frame.payload
    get = payload.get
    kind = frame.type
    parts: list[str] = []
    if kind == "orientation":
        parts = [as_text(v) for v in (get("role"), get("intent")) if v]
        guardrails = get("guardrails")
        if guardrails:
            items = guardrails if isinstance(guardrails, list) else [guardrails]
            parts.append("guardrails: " + "; ".join(as_text(g) for g in items))
    elif kind == "route_request":
        target = as_text(get("target") or frame.data.get("to") or "?")
        parts = [f"→ {target}"]
        for field in ("need", "intent", "goal", "action", "targetState"):
            if get(field):
                parts.append(f"{field}: {as_text(get(field))}")
    elif kind == "route_response":
        branches = get("branches")
        if isinstance(branches, dict):
            branches = list(branches.values())
        for branch in branches if isinstance(branches, list) else []:
            if isinstance(branch, dict):
                words = [as_text(branch[k]) for k in ("action", "reason") if branch.get(k)]
                if branch.get("decided_by"):
                    words.append(f"by {as_text(branch['decided_by'])}")
                parts.append(": ".join(words[:2]) + (" " + words[2] if len(words) > 2 else ""))
        result = get("result")
        if isinstance(result, dict):
            parts.append(
                "result: " + ", ".join(f"{k}={as_text(v)}" for k, v in list(result.items())[:6])
            )
        if get("in_reply_to"):
            parts.append(f"in reply to {as_text(get('in_reply_to'))}")
    elif kind == "focus_snapshot":
        parts = [as_text(v) for v in (get("state"), get("health")) if v]
        if get("reason"):
            parts.append(as_text(get("reason")))
        elif get("owner"):
            parts.append(f"owner {as_text(get('owner'))}")
    elif kind == "presence":
        parts = [
            f"{as_text(get('agent', '?'))}: {as_text(get('previous', '?'))} → "
            f"{as_text(get('presence', '?'))}"
        ]
        if get("reason"):
            parts.append(as_text(get("reason")))
    elif kind == "hello":
        parts = [as_text(v) for v in (get("role"), get("message")) if v]
    if not parts and payload:
        parts = [as_text(payload)]
    return _clip(" · ".join(p for p in parts if p))


def pretty(frame: Frame) -> str:
    return json.dumps(frame.data, ensure_ascii=False, indent=2, sort_keys=False)


# --- timeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineRow:
    frame: Frame

    @cached_property
    def summary(self) -> str:
        return summary(self.frame)

    @cached_property
    def pretty(self) -> str:
        return pretty(self.frame)

    @cached_property
    def guardrails(self) -> list[str]:
        """The sender's guardrails in force when it took this step (its orientation frame
        states them itself)."""
        frame = self.frame
        if frame.type == "orientation" or frame.orientation_id is None:
            return []
        view = OrientationView.of(frame.orientation)
        return view.guardrails if view else []


@dataclass(frozen=True)
class TimelinePage:
    rows: list[TimelineRow]
    older: int | None  # the `before` of the next page, when there is one


def timeline_page(
    coordination_pk: int, before: int | None = None, size: int = TIMELINE_PAGE
) -> TimelinePage:
    """Newest first, by keyset on seq (the chain's unique index), so page 200 costs what
    page 1 costs."""
    frames = (
        Frame.objects.filter(coordination_id=coordination_pk)
        .select_related("orientation")
        .order_by("-seq")
    )
    if before is not None:
        frames = frames.filter(seq__lt=before)
    page = list(frames[: size + 1])
    older = page[size - 1].seq if len(page) > size else None
    return TimelinePage([TimelineRow(f) for f in page[:size]], older)


def frames_after(coordination_pk: int, after: int, limit: int) -> list[Frame]:
    return list(
        Frame.objects.filter(coordination_id=coordination_pk, seq__gt=after)
        .select_related("orientation")
        .order_by("seq")[:limit]
    )


# --- orientations and agents -------------------------------------------------------------------


@dataclass(frozen=True)
class OrientationView:
    """role / intent / guardrails as text, read from an orientation frame's payload."""

    role: str
    intent: str
    guardrails: list[str]

    @classmethod
    def of(cls, frame: Frame | None) -> OrientationView | None:
        if frame is None:
            return None
        payload = frame.payload
        guardrails = payload.get("guardrails") or []
        if not isinstance(guardrails, list):
            guardrails = [guardrails]
        return cls(
            role=as_text(payload.get("role") or ""),
            intent=as_text(payload.get("intent") or ""),
            guardrails=[as_text(g) for g in guardrails],
        )


@dataclass(frozen=True)
class AgentCard:
    agent: Agent
    orientation: Orientation | None


def agent_cards(coordination: Coordination) -> list[AgentCard]:
    orientations = {o.agent_id: o for o in Orientation.objects.filter(coordination=coordination)}
    return [
        AgentCard(agent, orientations.get(agent.pk))
        for agent in sorted(agents_in(coordination), key=lambda a: a.name)
    ]


def open_requests(coordination: Coordination) -> list[RouteRequest]:
    return list(
        RouteRequest.objects.filter(coordination=coordination, status=RequestStatus.OPEN)
        .select_related("requester", "assigned_to")
        .order_by("created_at")
    )


# --- escalations -------------------------------------------------------------------------------


def escalations_with_context() -> QuerySet[Escalation]:
    """Escalations with everything their card shows, in a fixed number of queries."""
    return Escalation.objects.select_related(
        "coordination",
        "agent",
        "decided_by",
        "frame__orientation",
        "route_request__requester",
        "route_request__frame__orientation",
    ).prefetch_related("approvals__user")


@dataclass(frozen=True)
class EscalationCard:
    """The context an operator needs to decide: the reason, the orientation in force when the
    agent escalated, the request and the result it carried."""

    escalation: Escalation

    @property
    def pk(self) -> int:
        return self.escalation.pk

    @cached_property
    def orientation(self) -> OrientationView | None:
        e = self.escalation
        frame = e.frame.orientation
        request = e.route_request
        if frame is None and request is not None and request.requester_id == e.agent_id:
            # Escalations ltpdash opens for a request (to `human`, a critical action) hang
            # off ltpdash's own frame: the requester's orientation is the one in force.
            frame = request.frame.orientation
        return OrientationView.of(frame)

    @cached_property
    def requester_orientation(self) -> OrientationView | None:
        request = self.escalation.route_request
        if request is None or request.requester_id == self.escalation.agent_id:
            return None
        return OrientationView.of(request.frame.orientation)

    @cached_property
    def result(self) -> list[tuple[str, str]]:
        result = self.escalation.frame.payload.get("result")
        if not isinstance(result, dict):
            return []
        return [(str(k), as_text(v)) for k, v in result.items()]

    @cached_property
    def approvers(self) -> list[str]:
        return [a.user.username for a in self.escalation.approvals.all()]

    @property
    def approvals_count(self) -> int:
        return len(self.approvers)

    @property
    def version(self) -> str:
        """What the card's state block depends on, so a live page can tell whether the state
        a browser was rendered with is still current."""
        e = self.escalation
        return f"{e.status}.{self.approvals_count}.{e.tier}"


def cards(escalations) -> list[EscalationCard]:
    return [EscalationCard(e) for e in escalations]


def shown(cards: list[EscalationCard]) -> str:
    """The cards a page shows, with their versions: `12:pending.0.1,13:approved.0.1`."""
    return ",".join(f"{card.pk}:{card.version}" for card in cards)


def coordination_escalations(coordination_pk: int) -> list[EscalationCard]:
    """Every pending escalation of the coordination and its most recent decided ones."""
    base = escalations_with_context().filter(coordination_id=coordination_pk)
    pending = list(base.filter(status=EscalationStatus.PENDING).order_by("created_at")[:100])
    decided = list(
        base.exclude(status=EscalationStatus.PENDING).order_by("-created_at")[
            : max(DETAIL_ESCALATIONS - len(pending), 0)
        ]
    )
    return cards(sorted(pending + decided, key=lambda e: (e.created_at, e.pk)))


def inbox(extra_pks: set[int] | frozenset[int] = frozenset()) -> list[EscalationCard]:
    """Pending escalations across coordinations, oldest first; plus `extra_pks` (cards a
    live page already shows, so it can see them decided)."""
    condition = Q(status=EscalationStatus.PENDING)
    if extra_pks:
        condition |= Q(pk__in=extra_pks)
    rows = list(escalations_with_context().filter(condition).order_by("created_at", "pk"))
    pending = [e for e in rows if e.is_pending][:INBOX_LIMIT]
    shown = {e.pk for e in pending} | set(extra_pks)
    return cards(e for e in rows if e.pk in shown)


def pending_count() -> int:
    return Escalation.objects.filter(status=EscalationStatus.PENDING).count()


def operators_who_decide():
    """Operators a coordination can be handed to: those who may decide its escalations."""
    User = get_user_model()
    return (
        User.objects.filter(
            Q(is_superuser=True)
            | Q(groups__permissions__codename="decide")
            | Q(user_permissions__codename="decide"),
            is_active=True,
        )
        .distinct()
        .order_by("username")
    )


# --- the coordination list -----------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinationRow:
    coordination: Coordination
    agents: list[str]
    pending: int


def coordination_rows(coordinations: list[Coordination]) -> list[CoordinationRow]:
    """Agents involved and pending escalations for a page of coordinations, in two queries
    whatever the page size."""
    pks = [c.pk for c in coordinations]
    names: dict[int, set[str]] = {pk: set() for pk in pks}
    for pk, name in (
        Orientation.objects.filter(coordination_id__in=pks)
        .order_by()
        .values_list("coordination_id", "agent__name")
        .union(
            Frame.objects.filter(coordination_id__in=pks, agent__isnull=False)
            .order_by()
            .values_list("coordination_id", "agent__name")
        )
    ):
        names[pk].add(name)
    pending = dict(
        Escalation.objects.filter(coordination_id__in=pks, status=EscalationStatus.PENDING)
        .values_list("coordination_id")
        .annotate(n=Count("pk"))
        .values_list("coordination_id", "n")
    )
    return [CoordinationRow(c, sorted(names[c.pk]), pending.get(c.pk, 0)) for c in coordinations]


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)
