"""Agent connections: one row per live socket, the ground presence stands on.

    opened     a socket authenticated: a row (unless the agent has too many), online
    refreshed  the socket is alive: its row's `alive_until` moves out (a periodic task)
    closed     the socket closed: its row goes; offline when none is left
    expire     the sweeper: rows whose stamp passed belong to a dead process; delete them,
               and agents left without a live row go offline

A daphne killed by SIGKILL runs no disconnect handler; its rows stop being refreshed and the
sweeper finds them within `ttl()` seconds, so its agents go offline within the heartbeat
timeout.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from coordination import presence
from coordination.models import Agent, Connection, Presence

SERVER = f"{socket.gethostname()}:{os.getpid()}"
# Rows expired per sweep at most; a backlog drains over a few passes.
BATCH = 100


def ttl() -> float:
    """Seconds a connection's stamp lasts: half the heartbeat timeout, so that a dead
    process's agents are offline before the timeout with a sweep to spare."""
    return settings.HEARTBEAT_TIMEOUT / 2


def refresh_interval() -> float:
    """How often a live socket refreshes its stamp: three times per stamp."""
    return ttl() / 3


def opened(agent: Agent, channel_name: str) -> int | None:
    """Record a new socket of `agent`; its row's pk, or None when the agent already has
    LTP_MAX_CONNECTIONS_PER_AGENT live sockets (the socket is then refused)."""
    with transaction.atomic():
        # The agent's row lock serialises concurrent connects of one agent for the count.
        agent = Agent.objects.select_for_update(no_key=True).get(pk=agent.pk)
        now = timezone.now()
        live = Connection.objects.filter(agent=agent, alive_until__gt=now).count()
        if live >= settings.LTP_MAX_CONNECTIONS_PER_AGENT:
            return None
        row = Connection.objects.create(
            agent=agent,
            channel_name=channel_name[:200],
            server=SERVER[:200],
            alive_until=now + timedelta(seconds=ttl()),
        )
        Agent.objects.filter(pk=agent.pk).update(
            last_seen=now, heartbeat_deadline=agent.next_heartbeat_deadline(now)
        )
        if agent.presence != Presence.ONLINE:
            presence.change_presence(agent, agent.presence, Presence.ONLINE, "connected")
    return row.pk


def refreshed(connection_pk: int) -> bool:
    """Push the socket's stamp out; False when its row is gone (the sweeper took it for
    dead: the socket then opens a new one)."""
    alive_until = timezone.now() + timedelta(seconds=ttl())
    return bool(Connection.objects.filter(pk=connection_pk).update(alive_until=alive_until))


def closed(agent: Agent, connection_pk: int) -> None:
    with transaction.atomic():
        Connection.objects.filter(pk=connection_pk).delete()
        _offline_if_gone(agent, "disconnected")


def expire(now: datetime | None = None) -> list[str]:
    """Delete connections whose stamp has passed; agents left without one go offline."""
    now = now or timezone.now()
    stale = list(
        Connection.objects.filter(alive_until__lte=now)
        .order_by("alive_until")
        .values_list("pk", "agent_id")[:BATCH]
    )
    Connection.objects.filter(pk__in=[pk for pk, _ in stale], alive_until__lte=now).delete()
    lines = []
    for agent in Agent.objects.filter(pk__in={agent_pk for _, agent_pk in stale}):
        if _offline_if_gone(agent, "connection lost (no sign of life from its server)"):
            lines.append(f"{agent.name}: offline (connection lost)")
    return lines


def _offline_if_gone(agent: Agent, reason: str) -> bool:
    agent.refresh_from_db(fields=["presence", "presence_changed_at"])
    if agent.presence == Presence.OFFLINE:
        return False
    return presence.change_presence(
        agent, agent.presence, Presence.OFFLINE, reason, ~presence.connected()
    )
