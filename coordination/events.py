"""Channel-layer events, published only after the transaction that caused them commits.

Code that changes state calls one helper per kind of event (`coordination_changed`,
`dashboard_changed`, `frame_owed`); nothing is passed around. Each helper registers the event
with `transaction.on_commit`, so a rolled-back change announces nothing. Where the event goes
once committed depends on the context, as Zulip's `send_event_on_commit` does:

- inside `collecting()` / `acollecting()` (a consumer or view around its unit of work), the
  events gather in a context variable and are sent together when the block ends; asgiref
  carries context variables into `database_sync_to_async`, so the worker thread's commits
  land in the caller's list;
- anywhere else (the sweeper, a management command), each is sent as soon as it commits.

Group names come from primary keys; event types use dots (Channels maps them to handler
names). Consumers treat these as hints: a viewer catches up from the database, an agent's
owed frames are also redelivered from the outbox, so a dropped message (the layers drop
beyond a channel's capacity, Redis may be away) delays but never loses anything. That is also
why a failure to publish is logged, never raised: the change it announces is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

DASHBOARD = "dashboard"

Event = tuple[str, dict[str, Any]]
_collected: ContextVar[list[Event] | None] = ContextVar("ltpdash_events", default=None)
_handed_over: set[asyncio.Task[None]] = set()


def coordination_group(pk: int) -> str:
    return f"coordination.{pk}"


def agent_group(pk: int) -> str:
    return f"agent.{pk}"


# --- one helper per kind of event ----------------------------------------------------------


def coordination_changed(coordination_pk: int, seq: int | None = None) -> None:
    """Something a coordination's page shows changed (a frame appended at `seq`, a vote)."""
    _on_commit(
        coordination_group(coordination_pk),
        {"type": "coordination.changed", "coordination": coordination_pk, "seq": seq},
    )
    dashboard_changed(coordination_pk)


def dashboard_changed(coordination_pk: int | None = None) -> None:
    """Something the coordination list, the inbox or the nav's counter shows changed."""
    _on_commit(DASHBOARD, {"type": "dashboard.changed", "coordination": coordination_pk})


def frame_owed(agent_pk: int, delivery_pk: int, raw: str) -> None:
    """A frame was put in `agent_pk`'s outbox: push it to the agent's open sockets."""
    _on_commit(
        agent_group(agent_pk), {"type": "agent.deliver", "delivery": delivery_pk, "frame": raw}
    )


# --- collecting and sending ----------------------------------------------------------------


def _on_commit(group: str, message: dict[str, Any]) -> None:
    def committed() -> None:
        collected = _collected.get()
        if collected is not None:
            collected.append((group, message))
        else:
            _send_now([(group, message)])

    transaction.on_commit(committed)


@contextmanager
def _gathered() -> Iterator[list[Event]]:
    """A fresh list for the events committed inside the block; yields the list it ends with."""
    token = _collected.set([])
    gathered: list[Event] = []
    try:
        yield gathered
    finally:
        gathered.extend(_collected.get() or [])
        _collected.reset(token)


@contextmanager
def collecting() -> Iterator[None]:
    """Gather the events committed inside the block and send them when it ends (sync code)."""
    with _gathered() as gathered:
        yield
    _send_now(gathered)


@asynccontextmanager
async def acollecting() -> AsyncIterator[None]:
    """The same for async code: what `database_sync_to_async` work inside the block commits
    is sent when it ends, without a hop back to a thread per event."""
    with _gathered() as gathered:
        yield
    await send(gathered)


# Events that only say "look again": one of each per group is enough in one send.
HINTS = frozenset({"coordination.changed", "dashboard.changed"})


def coalesced(events: list[Event]) -> list[Event]:
    """`events` with repeated hints to one group dropped (a batch of frames to one
    coordination wakes its pages once), in the order of their last occurrence."""
    last = {(group, message["type"]): i for i, (group, message) in enumerate(events)}
    return [
        (group, message)
        for i, (group, message) in enumerate(events)
        if message["type"] not in HINTS or last[(group, message["type"])] == i
    ]


# Pages woken in this process, by group: with the in-memory layer (the embedded default, one
# process) a hint wakes them directly. Through the layer, each page's wake cost a task, a deep
# copy of the message and a scan of every channel in the process (`_clean_expired`) on both
# the send and the receive, per page and per frame. Pages still join the layer's groups, and
# other layers (Redis: several processes) carry hints as any other event.
_wakes: dict[str, dict[Callable[[], None], asyncio.AbstractEventLoop]] = {}


def listen(group: str, wake: Callable[[], None]) -> None:
    """Call `wake` (on the running loop) for each hint sent to `group` in this process."""
    _wakes.setdefault(group, {})[wake] = asyncio.get_running_loop()


def unlisten(group: str, wake: Callable[[], None]) -> None:
    woken = _wakes.get(group, {})
    woken.pop(wake, None)
    if not woken:
        _wakes.pop(group, None)


def _woken_here(layer: Any, group: str, message: dict[str, Any]) -> bool:
    """Wake `group`'s pages directly when the layer is this process's own; False to send."""
    if message["type"] not in HINTS or not isinstance(layer, InMemoryChannelLayer):
        return False
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for wake, loop in list(_wakes.get(group, {}).items()):
        if loop.is_closed():
            continue
        if loop is running:
            wake()
        else:  # sync code's own loop (async_to_sync), a test's: wake on the page's loop
            with suppress(RuntimeError):  # closed meanwhile: that page is gone
                loop.call_soon_threadsafe(wake)
    return True


async def send(events: list[Event]) -> None:
    if not events:
        return
    layer = get_channel_layer()
    for group, message in coalesced(events):
        if _woken_here(layer, group, message):
            continue
        try:
            await layer.group_send(group, message)
        except Exception:  # the layer's own errors have no common base class
            log.exception(
                "publishing %s to %s failed; readers catch up from the database",
                message.get("type"),
                group,
            )


def _send_now(events: list[Event]) -> None:
    if not events:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # plain sync code (a view's thread, the sweeper): wait for it
        async_to_sync(send)(events)
    else:
        # Sync code running on an event loop's own thread (allowed only where async-unsafe
        # calls are, as in the browser tests): it cannot block on the loop, so hand it over.
        task = loop.create_task(send(events))
        _handed_over.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(_handed_over.discard)
