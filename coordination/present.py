"""What the console shows, read from the models with a bounded number of queries.

Everything an agent wrote reaches the templates as plain strings or lists of strings:
templates autoescape them, and nothing here marks text safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Set
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, Q, QuerySet

from coordination.decisions import NOTE, agents_in
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
from coordination.models.prepared import marks, table
from coordination.schemas import (
    Branch,
    FocusSnapshotView,
    HelloView,
    OrientationView,
    PresenceView,
    RouteRequestView,
    RouteResponseView,
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
    view = frame.view
    parts: list[str] = []
    if isinstance(view, OrientationView):
        parts = [v for v in (view.role, view.intent) if v]
        if view.guardrails:
            parts.append("guardrails: " + "; ".join(view.guardrails))
    elif isinstance(view, RouteRequestView):
        parts = [f"→ {view.target or frame.data.get('to') or '?'}"]
        for name in ("need", "intent", "goal", "action", "targetState"):
            if getattr(view, name):
                parts.append(f"{name}: {getattr(view, name)}")
    elif isinstance(view, RouteResponseView):
        parts = [_branch_line(branch) for branch in view.branches]
        if view.result:
            items = list(view.result.items())[:6]
            parts.append("result: " + ", ".join(f"{k}={as_text(v)}" for k, v in items))
        if view.in_reply_to:
            parts.append(f"in reply to {view.in_reply_to}")
        instructions = frame.payload.get("instructions")
        if instructions:
            parts.append(f"instructions: {as_text(instructions)}")
    elif isinstance(view, FocusSnapshotView):
        parts = [v for v in (view.state, view.health) if v]
        parts.append(view.reason or (f"owner {view.owner}" if view.owner else ""))
    elif isinstance(view, PresenceView):
        parts = [f"{view.agent or '?'}: {view.previous or '?'} → {view.presence or '?'}"]
        parts.append(view.reason or "")
    elif isinstance(view, HelloView):
        parts = [v for v in (view.role, view.message) if v]
    elif frame.type == NOTE and isinstance(frame.payload.get("text"), str):
        parts = ["note: " + frame.payload["text"]]
    if not any(parts) and frame.payload:
        parts = [as_text(frame.payload)]
    return _clip(" · ".join(p for p in parts if p))


def _branch_line(branch: Branch) -> str:
    """`approve: looks right by alice`: what a branch does, why, and who decided it."""
    line = ": ".join(v for v in (branch.action, branch.reason) if v)
    decided_by = (branch.model_extra or {}).get("decided_by")
    return f"{line} by {as_text(decided_by)}" if decided_by else line


def pretty(frame: Frame) -> str:
    return json.dumps(frame.data, ensure_ascii=False, indent=2, sort_keys=False)


def orientation_of(frame: Frame) -> OrientationView:
    """The orientation an orientation frame declares (role, intent, guardrails)."""
    view = frame.view
    return view if isinstance(view, OrientationView) else OrientationView()


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
        if frame.type == "orientation" or frame.orientation is None:
            return []
        return orientation_of(frame.orientation).guardrails


# --- orientations and agents -------------------------------------------------------------------


@dataclass(frozen=True)
class AgentCard:
    agent: Agent
    orientation: Orientation | None


@dataclass(frozen=True)
class DrawnCard:
    """An agent card already rendered (a live page keeps them, see `agent_rows`)."""

    drawn: str


def agent_cards(coordination: Coordination, agent_pks: Set[int] | None = None) -> list[AgentCard]:
    """The agents of a coordination with their orientations there; `agent_pks`, when given,
    says who has spoken in it besides those with an orientation (a live page keeps that from
    the chain as it grows, rather than reading the whole chain again)."""
    # Only what the card shows: the block is redrawn on every orientation frame.
    orientations = {
        o.agent_id: o
        for o in Orientation.objects.filter(coordination=coordination).only(
            "agent_id", "frame_id", "role", "intent", "guardrails"
        )
    }
    if agent_pks is None:
        agents = agents_in(coordination)
    else:
        pks = set(agent_pks) | set(orientations)
        agents = list(Agent.objects.filter(pk__in=pks).only("name", "presence"))
    return [
        AgentCard(agent, orientations.get(agent.pk))
        for agent in sorted(agents, key=lambda a: a.name)
    ]


# One agent's card as a live page reads it: agent pk, name, presence, and its orientation
# here (the frame that declared it, role, intent, guardrails as stored; None when none).
AgentRow = tuple[int, str, str, int | None, str | None, str | None, Any]


def agent_rows(coordination_pk: int, agent_pks: Set[int]) -> list[AgentRow]:
    """The agents block's cards as rows, by name: `agent_pks` (who has spoken here) and
    those with an orientation here. One statement, no model built: a live page draws only
    the cards whose state (the row's first four values) it has not drawn yet."""
    agents, orientations = table(Agent), table(Orientation)
    sql = (
        f"SELECT a.id, a.name, a.presence, o.frame_id, o.role, o.intent, o.guardrails"  # noqa: S608
        f" FROM {agents} a LEFT JOIN {orientations} o"
        " ON o.agent_id = a.id AND o.coordination_id = %s"
        # Two lookups by primary key, never a scan of every agent (a fleet has thousands).
        f" WHERE a.id IN ({marks(len(agent_pks))})"
        f" OR a.id IN (SELECT agent_id FROM {orientations} WHERE coordination_id = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [coordination_pk, *sorted(agent_pks), coordination_pk])
        # Sorted here as `agent_cards` sorts: the database's collation may differ.
        return sorted(cursor.fetchall(), key=lambda row: row[1])


def agent_card(row: AgentRow) -> AgentCard:
    """A card from its row, for drawing it."""
    pk, name, presence, frame_pk, role, intent, guardrails = row
    agent = Agent(pk=pk, name=name, presence=presence)
    if frame_pk is None:
        return AgentCard(agent, None)
    if isinstance(guardrails, str):
        guardrails = json.loads(guardrails)
    orientation = Orientation(
        agent=agent, frame_id=frame_pk, role=role or "", intent=intent or "", guardrails=guardrails
    )
    return AgentCard(agent, orientation)


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
        return orientation_of(frame) if frame is not None else None

    @cached_property
    def requester_orientation(self) -> OrientationView | None:
        request = self.escalation.route_request
        if request is None or request.requester_id == self.escalation.agent_id:
            return None
        frame = request.frame.orientation
        return orientation_of(frame) if frame is not None else None

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
    def decided(self) -> bool:
        """Approved or rejected: final (a decided escalation never changes again)."""
        return not self.escalation.is_pending

    @property
    def at_deadline(self) -> str:
        """What happens when the deadline passes with no decision."""
        if settings.ESCALATION_DEFAULT == "next_tier" and self.escalation.tier == 1:
            return "moves to the admins"
        return "rejects automatically"

    @property
    def version(self) -> str:
        """What the card's state block depends on, so a live page can tell whether the state
        a browser was rendered with is still current."""
        e = self.escalation
        return f"{e.status}.{self.approvals_count}.{e.tier}"


def cards(escalations: Iterable[Escalation]) -> list[EscalationCard]:
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


def inbox(extra_pks: Set[int] = frozenset()) -> list[EscalationCard]:
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


def operators_who_decide() -> QuerySet[AbstractBaseUser]:
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


LIST_PAGE = 25


def list_context(page_number: str | None) -> dict[str, Any]:
    """The coordination list's page `page_number`, most recently active first."""
    coordinations = Coordination.objects.select_related("owner", "trace_import").order_by(
        "-last_activity", "pk"
    )
    page = Paginator(coordinations, LIST_PAGE).get_page(page_number)
    return {
        "page": page,
        "rows": coordination_rows(list(page.object_list)),
        "nav": "coordinations",
    }


def fields(frame: Frame | None) -> list[tuple[str, str]]:
    """A frame's payload as (key, one line of text) pairs, for reading at a glance."""
    if frame is None:
        return []
    return [(str(k), _clip(as_text(v))) for k, v in frame.payload.items() if k != "coordination_id"]


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)
