"""Revocation reaches open sockets: an agent whose token was rotated or revoked, and an
operator who logged out, was deactivated or lost the right to watch, lose their open sockets
within a second (close 4401).

One watcher per server process looks at the database twice a second for the sockets this
process holds (one query for agents, two for operators, whatever their number), so it works
whichever process or command made the change, on any channel layer. Between a change and the
close, ingest refuses what a rotated token sends (it compares the token hash it locks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db.models import Q
from django.utils import timezone

from coordination.models import Agent

log = logging.getLogger(__name__)

# How often the watcher looks; a revoked socket closes within this (plus one query).
WATCH_SECONDS = 0.5
CLOSE_UNAUTHORIZED = 4401

Close = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class AgentSocket:
    agent_pk: int
    token_hash: str
    close: Close


@dataclass(eq=False)
class ViewerSocket:
    user_pk: int
    session_key: str
    close: Close


@dataclass
class _Watched:
    agents: set[AgentSocket] = field(default_factory=set)
    viewers: set[ViewerSocket] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


_watched = _Watched()


def watch(socket: AgentSocket | ViewerSocket) -> None:
    """Start watching `socket` (call from the event loop that serves it)."""
    if isinstance(socket, AgentSocket):
        _watched.agents.add(socket)
    else:
        _watched.viewers.add(socket)
    if _watched.task is None or _watched.task.done():
        _watched.task = asyncio.get_running_loop().create_task(_run())


def unwatch(socket: AgentSocket | ViewerSocket) -> None:
    if isinstance(socket, AgentSocket):
        _watched.agents.discard(socket)
    else:
        _watched.viewers.discard(socket)


async def _run() -> None:
    while _watched.agents or _watched.viewers:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            revoked = await database_sync_to_async(_revoked)(
                list(_watched.agents), list(_watched.viewers)
            )
        except Exception:  # the database away: look again at the next tick
            log.exception("checking open sockets for revocation failed")
            continue
        for socket in revoked:
            unwatch(socket)
            await socket.close()


def _revoked(
    agents: list[AgentSocket], viewers: list[ViewerSocket]
) -> list[AgentSocket | ViewerSocket]:
    current = dict(
        Agent.objects.filter(pk__in={s.agent_pk for s in agents}).values_list("pk", "token_hash")
    )
    gone: list[AgentSocket | ViewerSocket] = [
        s for s in agents if current.get(s.agent_pk) != s.token_hash
    ]
    if viewers:
        sessions = set(
            Session.objects.filter(
                session_key__in={s.session_key for s in viewers}, expire_date__gt=timezone.now()
            ).values_list("session_key", flat=True)
        )
        watchers = set(
            User.objects.filter(pk__in={s.user_pk for s in viewers}, is_active=True)
            .filter(
                Q(is_superuser=True)
                | Q(
                    groups__permissions__codename="watch",
                    groups__permissions__content_type__app_label="coordination",
                )
                | Q(
                    user_permissions__codename="watch",
                    user_permissions__content_type__app_label="coordination",
                )
            )
            .values_list("pk", flat=True)
        )
        gone += [s for s in viewers if s.session_key not in sessions or s.user_pk not in watchers]
    return gone
