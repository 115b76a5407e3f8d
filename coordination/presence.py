"""Presence: online (connected, heartbeat fresh), silent (connected, heartbeat overdue),
offline (disconnected). Connected means at least one live `Connection` row (connections.py).

Every change is a conditional update (`filter(presence=old).update(...)`), so two processes
that notice the same change (two sweepers, a sweeper and a reconnect) record it once. A
recorded change is a frame ltpdash appends to the agent's current coordination: reviewers
can see why a request went to a fallback agent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from coordination import events, notifications, outbox
from coordination.models import Agent, Connection, Coordination, Presence

# Refreshing last_seen on every frame would add a write per frame; this is fine enough for
# deadlines measured in tens of seconds.
SEEN_RESOLUTION = timedelta(seconds=2)


def saw_agent(agent: Agent, heartbeat: bool = False) -> None:
    """The agent just spoke: push its heartbeat deadline out; a silent agent is online again."""
    now = timezone.now()
    if heartbeat or agent.last_seen is None or now - agent.last_seen > SEEN_RESOLUTION:
        agent.last_seen = now
        agent.heartbeat_deadline = agent.next_heartbeat_deadline(now)
        Agent.objects.filter(pk=agent.pk).update(
            last_seen=now, heartbeat_deadline=agent.heartbeat_deadline
        )
        # Ask the database, not `agent.presence`: a connection's Agent object is loaded at
        # connect, and the sweeper that marked the agent silent is another process.
        change_presence(
            agent, Presence.SILENT, Presence.ONLINE, "heartbeat resumed", connected(now)
        )


def connected(now: datetime | None = None) -> Q:
    """Agents with a live connection (a row whose liveness stamp has not passed)."""
    live = Connection.objects.filter(agent=OuterRef("pk"), alive_until__gt=now or timezone.now())
    return Q(Exists(live))


def silenced(agent: Agent, now: datetime | None = None) -> bool:
    """The sweeper found `agent` connected with its heartbeat deadline passed: mark it silent.

    Claimed on the deadline too, so a heartbeat that lands between the sweeper's read and
    its update wins and the agent stays online."""
    now = now or timezone.now()
    overdue = agent.heartbeat_deadline
    when = f" since {overdue:%H:%M:%S}" if overdue else ""
    return change_presence(
        agent,
        Presence.ONLINE,
        Presence.SILENT,
        f"heartbeat overdue{when}",
        connected(now),
        heartbeat_deadline__lte=now,
    )


def change_presence(
    agent: Agent, old: str, new: str, reason: str, *conditions: Q, **only_if: Any
) -> bool:
    """Record old → new once. Returns False when someone else already changed it (or the
    extra conditions no longer hold)."""
    with transaction.atomic():
        now = timezone.now()
        claimed = Agent.objects.filter(*conditions, pk=agent.pk, presence=old, **only_if).update(
            presence=new, presence_changed_at=now
        )
        if not claimed:
            return False
        agent.presence, agent.presence_changed_at = new, now
        notifications.presence_changed(agent, old, new, reason)
        events.dashboard_changed()
        coordination_pk = (
            Agent.objects.filter(pk=agent.pk)
            .values_list("current_coordination_id", flat=True)
            .first()
        )
        if coordination_pk is not None:
            outbox.emit(
                Coordination.locked(coordination_pk),
                "presence",
                {"agent": agent.name, "presence": new, "previous": old, "reason": reason},
            )
    return True


def describe(agent: Agent) -> str:
    """'metrics-agent offline since 12:03:10' — the words routing reasons are made of."""
    since = agent.presence_changed_at
    when = f" since {since:%H:%M:%S}" if since else ""
    return f"{agent.name} {agent.presence}{when}"
