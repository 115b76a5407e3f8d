"""Websocket consumers. Thin: they translate between sockets and ingest / the channel layer.

Channels awaits `aclose_old_connections()` (a hop to the sync thread) before every handler;
every ORM call here already goes through `database_sync_to_async`, which manages
connections itself, so `dispatch` skips that hop (it roughly halves throughput otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import User

from coordination import batching, connections, events, limits, outbox
from coordination.events import DASHBOARD, agent_group, coordination_group
from coordination.ingest import INTERNAL_ERROR
from coordination.intake import Chunk, frames_of, queued, take_in
from coordination.listing import ListQuery
from coordination.live import (
    CoordinationPage,
    DashboardPage,
    EscalationPage,
    InboxPage,
    LivePage,
    parse_shown,
)
from coordination.models import Agent, Coordination, Escalation
from coordination.owing import owing
from coordination.readahead import ReadAhead
from coordination.schemas import FrameError, Outcome, error_frame, parse_message
from coordination.sharing import rendered, tick
from coordination.timeline import Filter
from coordination.watch import AgentSocket, ViewerSocket, unwatch, watch

# Close codes (documented in the README).
CLOSE_UNAUTHORIZED = 4401
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_MANY_CONNECTIONS = 4409
# Messages refused in a row (rate limit) after which a connection counts as abusive.
MAX_STRIKES = 100
log = logging.getLogger(__name__)


class FastDispatchMixin:
    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Channels reads the channel layer in the same loop as the socket: a layer that fails
    # (Redis away) would end the socket with 1011. The socket outlives it instead; what the
    # layer would have announced is caught up from the database meanwhile.
    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        async def resilient() -> dict[str, Any]:
            pause = 0.5
            while True:
                try:
                    return await receive()
                except Exception:  # the layer's own errors have no common base class
                    log.warning("channel layer unavailable; retrying in %.1f s", pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)

        self._channel_receive = resilient


async def _joined(consumer: AsyncWebsocketConsumer, group: str, join: bool) -> None:
    """Join or leave a channel-layer group. With the layer away (Redis down) the socket still
    works: agents get owed frames from the outbox check, pages from their refresh timer."""
    layer = consumer.channel_layer
    try:
        if join:
            await layer.group_add(group, consumer.channel_name)
        else:
            await layer.group_discard(group, consumer.channel_name)
    except Exception:  # the layer's own errors have no common base class
        log.warning("channel layer unavailable for %s; relying on the database", group)


def _authorization(scope: dict[str, Any]) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)


class AgentConsumer(FastDispatchMixin, AsyncWebsocketConsumer):
    """`/ws/agent/`: one authenticated agent speaking LTP (PROTOCOL §4)."""

    agent: Agent | None = None
    # Set when ltpdash closes the socket for abuse: what the agent sent before its side of
    # the close handshake is still delivered, and must not be ingested.
    closing = False

    async def connect(self) -> None:
        self.agent = await database_sync_to_async(Agent.from_authorization)(
            _authorization(self.scope)
        )
        if self.agent is None:
            # Accept first so the agent can read why: a handshake refusal carries no reason.
            await self.accept()
            await self.send(
                text_data=_dumps(
                    error_frame("unauthorized", "Missing or unknown agent token (Bearer).")
                )
            )
            await self.close(code=CLOSE_UNAUTHORIZED, reason="unauthorized")
            return
        self.session_id = uuid.uuid4().hex
        self.strikes = 0
        self.ahead, self.lane = ReadAhead(), 0
        self.sent: set[int] = set()  # deliveries pushed on this connection
        async with events.acollecting():
            self.connection = await database_sync_to_async(connections.opened)(
                self.agent, self.channel_name
            )
        await self.accept()
        if self.connection is None:
            await self.send_frame(
                error_frame(
                    "too_many_connections",
                    f"This agent already has {settings.LTP_MAX_CONNECTIONS_PER_AGENT} "
                    "open connections.",
                )
            )
            self.closing = True
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS, reason="too many connections")
            return
        await _joined(self, agent_group(self.agent.pk), join=True)
        self.watched = AgentSocket(self.agent.pk, self.agent.token_hash, self._revoked)
        watch(self.watched)
        self.tasks = [
            asyncio.create_task(self._watch_outbox()),
            asyncio.create_task(self._keep_alive()),
        ]

    async def disconnect(self, code: int) -> None:
        if self.agent is None or getattr(self, "connection", None) is None:
            return
        for task in self.tasks:
            task.cancel()
        self.ahead.cancel()
        unwatch(self.watched)
        await _joined(self, agent_group(self.agent.pk), join=False)
        async with events.acollecting():
            await database_sync_to_async(connections.closed)(self.agent, self.connection)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.agent is None or self.closing:
            return
        try:
            items = self._items(text_data, bytes_data)
            if isinstance(items, list) and self._plain(items):
                # Read ahead (coordination.readahead): queued now, answered in order. Only
                # behind frames queued in the same lane, which stores them in order.
                lane = batching.queue().lane_of(self.agent, items)
                if not self.ahead.owed or lane == self.lane:
                    self.lane = lane
                    stored = queued(self.agent, items, self.session_id)
                    self.ahead.then(partial(self._answer, items, stored))
                    await self.ahead.room()
                    return
            await self.ahead.drained()
            if isinstance(items, dict):
                await self.send_frame(items)  # the message's error
            else:
                await self._receive(items)
        except Exception:
            self._failed()
            await self.ahead.drained()  # after the replies owed before it
            await self.send_frame(error_frame(*INTERNAL_ERROR))

    def _failed(self) -> None:
        # A bug or a fault of ours: logged once, answered, and the socket stays usable.
        assert self.agent is not None
        log.exception("agent socket of %s failed on a message", self.agent.name)

    def _items(self, text_data: str | None, bytes_data: bytes | None) -> list[Any] | dict[str, Any]:
        """The message's frames, or the error frame that answers it."""
        assert self.agent is not None
        raw = text_data if text_data is not None else bytes_data or b""
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        if size > settings.LTP_MAX_FRAME_BYTES:
            return error_frame(
                "frame_too_large",
                f"A message may be at most {settings.LTP_MAX_FRAME_BYTES} bytes; "
                f"this one was {size}. Nothing was stored.",
            )
        try:
            data = parse_message(raw)
        except FrameError as exc:
            return error_frame(exc.code, exc.message)
        items = frames_of(self.agent, data) if data != {} else []
        return items or error_frame("empty_message", "The message holds no frame.")

    def _plain(self, items: list[Any]) -> bool:
        """One chunk, no hello (its replay follows its ack), the agent not being refused."""
        return (
            len(items) <= limits.CHUNK
            and self.strikes == 0
            and not any(isinstance(i, dict) and i.get("type") == "hello" for i in items)
        )

    async def _answer(self, items: list[Any], stored: Callable[[], Awaitable[Chunk]]) -> None:
        try:
            chunk = await stored()
            for reply in chunk.replies:
                await self.send_frame(reply)
            await self._struck(chunk.rate_limited == len(items))
        except Exception:
            self._failed()
            await self.send_frame(error_frame(*INTERNAL_ERROR))

    async def _receive(self, items: list[Any]) -> None:
        assert self.agent is not None
        hello: Outcome | None = None
        refused = 0
        async for chunk in take_in(self.agent, items, self.session_id):
            for reply in chunk.replies:
                await self.send_frame(reply)
            refused += chunk.rate_limited
            hello = hello or next(
                (o for o in chunk.outcomes if o.type == "hello" and o.error is None), None
            )
        if await self._struck(refused == len(items)):
            return
        if 0 < refused < len(items):
            # Backpressure for lists that each get a little of the budget (strikes count
            # only messages refused whole): the next message waits for the budget to refill.
            await asyncio.sleep(limits.pause(refused))
        if hello is not None:
            await self._replay(hello.coordination_key)

    async def _struck(self, refused: bool) -> bool:
        """Count messages refused whole for the rate limit; close after MAX_STRIKES."""
        self.strikes = self.strikes + 1 if refused else 0
        if self.strikes < MAX_STRIKES:
            return False
        await self.send_frame(error_frame("rate_limited", "Too many frames; closing."))
        self.closing = True
        await self.close(code=CLOSE_RATE_LIMITED, reason="rate limit")
        return True

    async def _replay(self, coordination_key: str | None) -> None:
        """After hello: continuity, leaving out what this socket has already pushed (an
        owed frame the outbox check sent before the hello came is not sent twice)."""
        assert self.agent is not None
        replay = await database_sync_to_async(outbox.continuity)(self.agent, coordination_key)
        for pk, text in replay:
            if pk is not None:
                if pk in self.sent:
                    continue
                self.sent.add(pk)
            await self.send(text_data=text)

    async def _revoked(self) -> None:
        """The token was rotated or revoked: say so, then close (4401)."""
        self.closing = True
        await self.send_frame(
            error_frame("unauthorized", "This token was rotated or revoked; closing.")
        )
        await self.close(code=CLOSE_UNAUTHORIZED, reason="token revoked")

    async def agent_deliver(self, event: dict[str, Any]) -> None:
        if event["delivery"] in self.sent:
            return
        self.sent.add(event["delivery"])
        await self.send(text_data=event["frame"])

    async def _keep_alive(self) -> None:
        # The connection's row says this socket lives; a process that dies stops saying it.
        while True:
            await asyncio.sleep(connections.refresh_interval())
            try:
                alive = await database_sync_to_async(connections.refreshed)(self.connection)
                if not alive:  # the sweeper took this socket for dead: count it again
                    assert self.agent is not None
                    async with events.acollecting():
                        reopened = await database_sync_to_async(connections.opened)(
                            self.agent, self.channel_name
                        )
                    self.connection = reopened or self.connection
            except Exception:
                log.exception("refreshing the connection of %s failed", self.agent)

    async def _watch_outbox(self) -> None:
        # Frames owed that no channel-layer message announced: written by another process
        # (the sweeper) on the in-memory layer, or dropped by a full channel.
        assert self.agent is not None
        while True:
            await asyncio.sleep(settings.OUTBOX_CHECK_SECONDS)
            try:
                if self.agent.pk not in await owing().agents():
                    continue
                owed = await database_sync_to_async(outbox.owed)(self.agent, self.sent)
            except Exception:  # the database away: look again at the next check
                log.exception("checking the outbox of %s failed", self.agent.name)
                continue
            for pk, text in owed:
                self.sent.add(pk)
                await self.send(text_data=text)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=_dumps(frame))


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --- the console's live pages ----------------------------------------------------------------

# An event renders a viewer's page at once; the events that arrive while it renders or sends
# make one render after it, so a burst becomes few messages with no fixed delay at light load.
# A viewer also looks at the database this often when no event came (the sweeper's writes are
# announced by nobody on the in-memory layer, and full channels drop events).
LIVE_CHECK_SECONDS = 2.5


class LiveViewerConsumer(FastDispatchMixin, AsyncWebsocketConsumer):
    """A browser page kept current with HTML fragments (htmx ws extension, out-of-band swaps).

    Refused unless the session's user may watch. Events only wake the page; `LivePage`
    reads what changed from the database, so a dropped event delays an update, never loses it.
    """

    groups_to_join: tuple[str, ...] = ()
    page: LivePage | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.page = page = await database_sync_to_async(self.open_page)(user, self.query())
        if page is None:
            await self.close()
            return
        self.wake = asyncio.Event()
        for group in self.groups_to_join:
            await _joined(self, group, join=True)
            events.listen(group, self._woken)
        await self.accept()
        session_key = getattr(self.scope.get("session"), "session_key", None) or ""
        self.watched = ViewerSocket(user.pk, session_key, self._revoked)
        watch(self.watched)
        self.asked = tick()
        self.refresher = asyncio.create_task(self._refresh_loop(page))

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    def open_page(self, user: User, query: dict[str, str]) -> LivePage | None:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        if self.page is None:
            return
        unwatch(self.watched)
        self.refresher.cancel()
        for group in self.groups_to_join:
            events.unlisten(group, self._woken)
            await _joined(self, group, join=False)

    async def _revoked(self) -> None:
        """Logged out, deactivated, or no longer allowed to watch: close (4401)."""
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def coordination_changed(self, event: dict[str, Any]) -> None:
        self._woken()

    async def dashboard_changed(self, event: dict[str, Any]) -> None:
        self._woken()

    def _woken(self) -> None:
        # The tick says "after this": a render shared with other viewers must have started
        # after the event came, so it read what the event announces.
        self.asked = tick()
        self.wake.set()

    async def _refresh_loop(self, page: LivePage) -> None:
        while True:
            self.wake.clear()
            try:
                html, more = await rendered(page.changes, self.asked)
            except Exception:
                # A page that cannot render now (the database away, a row gone) tries again
                # at the next tick rather than going silent for good.
                log.exception("live page %s could not render", self.scope.get("path"))
                html, more = "", False
            if html:
                await self.send(text_data=html)
            if more or self.wake.is_set():
                continue  # behind, or woken while rendering: one more render for all of it
            try:
                await asyncio.wait_for(self.wake.wait(), LIVE_CHECK_SECONDS)
            except TimeoutError:
                self.asked = tick()  # the slow check reads afresh too


class DashboardConsumer(LiveViewerConsumer):
    """`/ws/ui/dashboard/?page=N`: the coordination list."""

    groups_to_join = (DASHBOARD,)

    def open_page(self, user: User, query: dict[str, str]) -> LivePage | None:
        if not user.has_perm("coordination.watch"):
            return None
        return DashboardPage(user, ListQuery.from_query(query))


class InboxConsumer(LiveViewerConsumer):
    """`/ws/ui/escalations/?shown=1,2`: the escalation inbox."""

    groups_to_join = (DASHBOARD,)

    def open_page(self, user: User, query: dict[str, str]) -> LivePage | None:
        if not user.has_perm("coordination.watch"):
            return None
        return InboxPage(user, parse_shown(query.get("shown", "")))


class CoordinationViewerConsumer(LiveViewerConsumer):
    """`/ws/ui/coordinations/<pk>/?seq=N&shown=1,2`: one coordination's page, which was
    rendered with frames up to seq N."""

    def open_page(self, user: User, query: dict[str, str]) -> LivePage | None:
        if not user.has_perm("coordination.watch"):
            return None
        pk = self.scope["url_route"]["kwargs"]["pk"]
        coordination = Coordination.objects.filter(pk=pk).only("pk", "key", "head_seq").first()
        if coordination is None:
            return None
        try:
            seq = int(query.get("seq", ""))
        except ValueError:
            seq = coordination.head_seq
        self.groups_to_join = (coordination_group(coordination.pk),)
        shown = parse_shown(query.get("shown", ""))
        return CoordinationPage(user, coordination, seq, shown, Filter.from_query(query))


class EscalationViewerConsumer(LiveViewerConsumer):
    """`/ws/ui/escalations/<pk>/?shown=…`: one escalation's page."""

    groups_to_join = (DASHBOARD,)

    def open_page(self, user: User, query: dict[str, str]) -> LivePage | None:
        pk = self.scope["url_route"]["kwargs"]["pk"]
        if not user.has_perm("coordination.watch") or not Escalation.objects.filter(pk=pk).exists():
            return None
        return EscalationPage(user, pk, parse_shown(query.get("shown", "")))


# Browser routes (path, consumer), mounted by ltpdash/asgi.py behind the session and an
# Origin check.
BROWSER_ROUTES: list[tuple[str, type]] = [
    ("ws/ui/dashboard/", DashboardConsumer),
    ("ws/ui/escalations/", InboxConsumer),
    ("ws/ui/escalations/<int:pk>/", EscalationViewerConsumer),
    ("ws/ui/coordinations/<int:pk>/", CoordinationViewerConsumer),
]
