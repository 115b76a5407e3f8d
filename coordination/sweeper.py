"""The sweeper: acts on stored deadlines that have passed.

    connection stamp passed (its process died)  → row deleted; no live row left → offline
    heartbeat_deadline passed, agent connected   → silent (a presence frame)
    route request deadline passed, no answer     → next rung of the ladder (decisions.timed_out)
    escalation deadline passed, nobody decided   → the default or the next tier (decisions.expire)

Like healthchecks' sendalerts: each pass reads the rows whose deadline has passed (indexed
columns, no scanning), and each row is claimed by a conditional update on the value it read,
so several sweepers (several machines, or a restart overlapping the old process) apply each
change exactly once. The loser of a claim simply moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from coordination import connections, decisions, events, notify_send, presence
from coordination.models import (
    Agent,
    Coordination,
    Escalation,
    EscalationStatus,
    Presence,
    RequestStatus,
    RouteRequest,
)
from coordination.processes import repeat

# Rows claimed per kind per pass: a backlog drains over a few passes instead of holding
# one long pass (and its locks) hostage.
BATCH = 100


def sweep(now: datetime | None = None) -> list[str]:
    """One pass. Returns a short line per change this sweeper applied.

    Each change commits on its own; their events are published together at the end."""
    now = now or timezone.now()
    with events.collecting():
        return [
            *connections.expire(now),
            *silence_agents(now),
            *time_out_requests(now),
            *expire_escalations(now),
            *notify_send.run_pass(),
        ]


def silence_agents(now: datetime) -> list[str]:
    lines = []
    overdue = Agent.objects.filter(
        presence.connected(now), presence=Presence.ONLINE, heartbeat_deadline__lte=now
    ).order_by("heartbeat_deadline")[:BATCH]
    for agent in overdue:
        if presence.silenced(agent, now):
            lines.append(f"{agent.name}: silent (heartbeat overdue since {_hms(agent)})")
    return lines


def time_out_requests(now: datetime) -> list[str]:
    lines = []
    overdue = RouteRequest.objects.filter(status=RequestStatus.OPEN, deadline__lte=now).order_by(
        "deadline"
    )[:BATCH]
    for pk, coordination_pk, deadline in overdue.values_list("pk", "coordination_id", "deadline"):
        assert deadline is not None  # filtered on it
        line = _time_out(pk, coordination_pk, deadline)
        if line:
            lines.append(line)
    return lines


def _time_out(pk: int, coordination_pk: int, deadline: datetime) -> str | None:
    with transaction.atomic():
        # The chain's lock first (the order ingest takes), then the claim on the deadline read.
        coordination = Coordination.locked(coordination_pk)
        claimed = RouteRequest.objects.filter(
            pk=pk, status=RequestStatus.OPEN, deadline=deadline
        ).update(deadline=None)
        if not claimed:
            return None  # answered meanwhile, or another sweeper got here first
        request = RouteRequest.objects.select_related("requester", "assigned_to", "frame").get(
            pk=pk
        )
        request.coordination, request.deadline = coordination, deadline
        decisions.timed_out(request)
    step = (
        f"routed to {request.assigned_to.name}"
        if request.status == RequestStatus.OPEN and request.assigned_to
        else "escalated to humans"
    )
    return f"{coordination.key}: request {request.ltp_id} timed out; {step}"


def expire_escalations(now: datetime) -> list[str]:
    lines = []
    overdue = (
        Escalation.objects.filter(status=EscalationStatus.PENDING, deadline__lte=now)
        .select_related("coordination", "agent")
        .order_by("deadline")[:BATCH]
    )
    for escalation in overdue:
        tier = escalation.tier
        if decisions.expire(escalation):
            escalation.refresh_from_db()
            what = (
                "moved to tier 2 (admins)"
                if escalation.tier > tier
                else f"default applied: {escalation.status}"
            )
            lines.append(f"{escalation.coordination.key}: escalation {escalation.pk} {what}")
    return lines


def run(
    interval: float,
    write: Callable[[str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Sweep every `interval` seconds until `should_stop()`."""
    repeat(interval, sweep, write, should_stop)


def _hms(agent: Agent) -> str:
    return f"{agent.heartbeat_deadline:%H:%M:%S}" if agent.heartbeat_deadline else "?"
