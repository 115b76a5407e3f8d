"""A small asyncio client for agents speaking LTP to ltpdash.

    async with LtpClient("ws://127.0.0.1:8000/ws/agent/", token, "triage-agent",
                         coordination_id="incident-4821") as client:
        acks = await client.send({"orientation": {...}, "route_request": {...}})
        frame = await client.receive(type="route_response")

The client gives every frame an id before sending (bundles get a bundle id, so each frame's
id is `<bundle id>:<type>`), keeps what is not yet acknowledged, and after a reconnect
(exponential backoff) sends hello again and resends it: the server stores a retried frame once
and acknowledges it again. Frames the server sends are acknowledged and deduplicated by id.

Depends only on `websockets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)

CONTROL = {"ack", "error"}


class LtpError(Exception):
    def __init__(self, frame: dict) -> None:
        payload = frame.get("payload") or {}
        super().__init__(f"{payload.get('code')}: {payload.get('message')}")
        self.code = payload.get("code")
        self.frame = frame


class _Pending:
    """One message on the wire and the acks/errors it is waiting for, by frame id."""

    def __init__(self, text: str, ids: list[str], raw: bool = False):
        self.text = text
        self.ids = ids
        self.raw = raw  # sent as is: the server's answer names ids this client never chose
        self.replies: dict[str, dict] = {}
        self.done = asyncio.get_running_loop().create_future()

    def resolve(self, frame_id: str | None, reply: dict) -> None:
        if frame_id is None:
            # An error about the message as a whole (malformed, too large, rate limited).
            for fid in self.ids:
                self.replies.setdefault(fid, reply)
        else:
            self.replies[frame_id] = reply
        if len(self.replies) >= len(self.ids) and not self.done.done():
            self.done.set_result([self.replies[fid] for fid in self.ids])


class LtpClient:
    def __init__(
        self,
        url: str,
        token: str,
        name: str,
        *,
        coordination_id: str | None = None,
        hello: dict | None = None,
        heartbeat_interval: float | None = None,
        auto_ack: bool = True,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
    ):
        self.url, self.token, self.name = url, token, name
        self.coordination_id = coordination_id
        self.hello_payload = dict(hello or {})
        if coordination_id:
            self.hello_payload.setdefault("coordination_id", coordination_id)
        self.heartbeat_interval = heartbeat_interval
        self.auto_ack = auto_ack
        self.reconnect = reconnect
        self.backoff = backoff
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.seen: set[str] = set()
        self.pending: deque[_Pending] = deque()
        self.by_id: dict[str, _Pending] = {}
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task] = []
        self._heartbeat_seq = 0
        self.reconnects = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> LtpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        await self._open()
        self._tasks.append(asyncio.create_task(self._reader()))
        if self.heartbeat_interval:
            self._tasks.append(asyncio.create_task(self._heartbeats()))
        if self.hello_payload is not None:
            await self.send({"type": "hello", "payload": self.hello_payload})

    @property
    def _socket(self) -> ClientConnection:
        if self.ws is None:
            raise ConnectionError("not connected")
        return self.ws

    async def _open(self) -> None:
        self.ws = await websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            max_size=8 * 1024 * 1024,
        )
        self.connected.set()

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ws is not None:
            await self.ws.close()

    async def drop(self) -> None:
        """Close the socket as a network failure would (the client reconnects)."""
        if self.ws is not None:
            await self.ws.close()

    # -- sending ------------------------------------------------------------------------------

    def _with_ids(self, message: Any) -> tuple[Any, list[str]]:
        if isinstance(message, list):
            out, ids = [], []
            for item in message:
                item, item_ids = self._with_ids(item)
                out.append(item)
                ids.extend(item_ids)
            return out, ids
        if not isinstance(message, dict):
            return message, []
        message = dict(message)
        if "type" in message or "v" in message:
            message.setdefault("v", "0.1")
            message.setdefault("id", f"{self.name}-{uuid.uuid4().hex[:16]}")
            message.setdefault("ts", int(time.time() * 1000))
            message.setdefault("payload", {})
            if self.coordination_id and message.get("type") not in {"hello", "heartbeat", "ack"}:
                message.setdefault("coordination_id", self.coordination_id)
            return message, [] if message.get("type") == "ack" else [message["id"]]
        message.setdefault("id", f"{self.name}-{uuid.uuid4().hex[:16]}")
        if self.coordination_id:
            message.setdefault("coordination_id", self.coordination_id)
        types = [k for k in message if k not in {"id", "coordination_id", "to"}]
        return message, [f"{message['id']}:{t}" for t in types]

    async def send(self, message: Any, timeout: float = 10.0) -> list[dict]:
        """Send a frame, a list or a bundle; return the ack/error frame for each frame."""
        message, ids = self._with_ids(message)
        text = json.dumps(message, ensure_ascii=False)
        if not ids:
            await self._send_text(text)
            return []
        pending = _Pending(text, ids)
        self.pending.append(pending)
        for fid in ids:
            self.by_id[fid] = pending

        async def exchange() -> list[dict]:
            # Waiting for a reconnect counts against `timeout` too.
            await self._send_text(text)
            return await asyncio.shield(pending.done)

        try:
            return await asyncio.wait_for(exchange(), timeout)
        finally:
            if pending.done.done():
                self._forget(pending)

    async def send_raw(self, text: str, timeout: float = 10.0) -> dict:
        """Send text as is (tests of bad input); return the next ack or error."""
        pending = _Pending(text, [f"raw-{uuid.uuid4().hex}"], raw=True)
        self.pending.append(pending)
        await self._send_text(text)
        try:
            replies = await asyncio.wait_for(asyncio.shield(pending.done), timeout)
        finally:
            self._forget(pending)
        return replies[0]

    def _closed_because(self) -> str:
        code = self.ws.close_code if self.ws is not None else None
        return f"the connection closed (code {code}) and this client does not reconnect"

    async def _send_text(self, text: str) -> None:
        if not self.connected.is_set() and (self._closing or not self.reconnect):
            raise ConnectionError(self._closed_because())
        await self.connected.wait()
        # On a closed socket the message stays pending and is resent after the reconnect.
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._socket.send(text)

    def _forget(self, pending: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self.pending.remove(pending)
        for fid in pending.ids:
            if self.by_id.get(fid) is pending:
                del self.by_id[fid]

    async def ack(self, frame_id: str) -> None:
        await self._send_text(json.dumps({"type": "ack", "payload": {"frame_id": frame_id}}))

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self,
        type: str | None = None,
        timeout: float = 10.0,
        where: Callable[[dict], bool] | None = None,
    ) -> dict:
        """The next frame from the server (not an ack/error) matching `type` and `where`.
        Frames that do not match are kept for later calls."""
        deadline = asyncio.get_running_loop().time() + timeout
        skipped: list[dict] = []
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                frame = await asyncio.wait_for(self.inbox.get(), max(remaining, 0))
                if (type is None or frame.get("type") == type) and (where is None or where(frame)):
                    return frame
                skipped.append(frame)
        finally:
            for frame in skipped:
                self.inbox.put_nowait(frame)

    async def _reader(self) -> None:
        while True:
            try:
                async for message in self._socket:
                    text = message.decode() if isinstance(message, bytes) else message
                    await self._on_message(text)
            except websockets.ConnectionClosed:
                pass
            self.connected.clear()
            if self._closing or not self.reconnect:
                # Nobody will resend these: tell their senders now rather than at a timeout.
                for pending in self.pending:
                    if not pending.done.done():
                        pending.done.set_exception(ConnectionError(self._closed_because()))
                return
            await self._reconnect()

    async def _on_message(self, text: str) -> None:
        frame = json.loads(text)
        kind = frame.get("type")
        payload = frame.get("payload") or {}
        if kind in CONTROL:
            fid = payload.get("frame_id")
            if fid is not None:
                pending = self.by_id.get(fid) or next(
                    # A raw message's frames carry ids of their own (the server answers in
                    # order). Never another message: a late duplicate ack must not resolve it.
                    (p for p in self.pending if p.raw and not p.done.done()),
                    None,
                )
            else:
                # The server answers in order, so an error naming no frame is about the
                # oldest message still waiting.
                pending = next((p for p in self.pending if not p.done.done()), None)
            if pending is not None:
                pending.resolve(fid if fid in pending.ids else None, frame)
            return
        fid = frame.get("id")
        if self.auto_ack and fid:
            await self.ack(fid)
        if fid in self.seen:
            return
        if fid:
            self.seen.add(fid)
        await self.inbox.put(frame)

    async def _reconnect(self) -> None:
        delay, ceiling = self.backoff
        while not self._closing:
            try:
                await self._open()
            except (OSError, websockets.InvalidHandshake, websockets.InvalidStatus):
                await asyncio.sleep(delay)
                delay = min(delay * 2, ceiling)
                continue
            self.reconnects += 1
            if self.hello_payload is not None:
                hello, _ = self._with_ids({"type": "hello", "payload": self.hello_payload})
                await self._socket.send(json.dumps(hello))
            for pending in list(self.pending):
                await self._socket.send(pending.text)
            return

    async def _heartbeats(self) -> None:
        interval = self.heartbeat_interval or 0.0
        while True:
            await asyncio.sleep(interval)
            self._heartbeat_seq += 1
            with contextlib.suppress(Exception):
                await self.send(
                    {"type": "heartbeat", "payload": {"seq": self._heartbeat_seq, "status": "ok"}},
                    timeout=interval,
                )
