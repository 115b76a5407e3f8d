"""What the benchmark speaks: a lean agent socket, a browser's live-page socket, an operator.

The agent socket is raw `websockets` (the transport of `ltpdash_client`), sending frames with
ids of its own and matching acks by id, so the client costs little CPU next to the server
on a 2-core machine; the same socket is used against ltpdash and against the bare reference.
The viewer opens what a browser opens: the page over HTTP with the session cookie of a real
login, then the page's own `ws-connect` URL with an Origin header.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import websockets

# Frame ids the benchmark sends: unique in the process, so unique in a scratch database.
_IDS = itertools.count(1)
ID_RE = re.compile(r"bx-\d+")
_ROW_SPLIT = '<li id="frame-'
_WS_CONNECT = re.compile(r'ws-connect="([^"]+)"')
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def new_id() -> str:
    return f"bx-{next(_IDS)}"


def _dumps(frame: Any) -> str:
    return json.dumps(frame, separators=(",", ":"))


class AgentSocket:
    """One agent's socket: frames out with a send time each, acks matched by frame id.

    `acked` keeps (seq, hash) of every acknowledged frame (the chain check reads it); frames
    ltpdash sends to the agent are acknowledged and queued in `inbox`."""

    def __init__(self, url: str, token: str, name: str, coordination: str | None = None):
        self.url, self.token, self.name, self.coordination = url, token, name, coordination
        self.waiting: dict[str, asyncio.Future] = {}
        self.sent_at: dict[str, float] = {}
        self.acked: dict[str, tuple[int | None, str | None]] = {}
        self.errors: list[dict] = []
        self.pumped: list[str] = []  # ids of the frames `pump` sent and got acked
        self.in_flight: dict[str, float] = {}  # pump's frames not yet answered: sent at
        self.latencies: list[float] = []
        self.slots: asyncio.Semaphore | None = None
        self.drained = asyncio.Event()
        self.inbox: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
        self.ws: Any = None
        self.reader: asyncio.Task | None = None

    async def open(self) -> float:
        """Connect and say hello; seconds until hello's ack (the first reply)."""
        started = time.perf_counter()
        self.ws = await websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            max_size=8 * 1024 * 1024,
            ping_interval=None,
        )
        self.reader = asyncio.create_task(self._read())
        payload = {"coordination_id": self.coordination} if self.coordination else {}
        await self.send(self.frame("hello", payload))
        return time.perf_counter() - started

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)

    def frame(self, kind: str = "orientation", payload: dict | None = None) -> dict:
        frame_id = new_id()
        if payload is None:
            payload = {"intent": f"step {frame_id}", "guardrails": ["no production writes"]}
        frame = {
            "v": "0.1",
            "id": frame_id,
            "ts": int(time.time() * 1000),
            "type": kind,
            "from": self.name,
            "payload": payload,
        }
        if self.coordination and kind != "heartbeat":
            frame["coordination_id"] = self.coordination
        return frame

    async def send(self, frame: dict) -> dict:
        """Send one frame; its ack (or error) when it comes."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[frame["id"]] = future
        self.sent_at[frame["id"]] = time.perf_counter()
        await self.ws.send(_dumps(frame))
        return await future

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self.ws:
                at = time.perf_counter()
                data = json.loads(text)
                for frame in data if isinstance(data, list) else [data]:
                    await self._take(frame, at)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name}: socket closed"))

    async def _take(self, frame: dict, at: float) -> None:
        payload = frame.get("payload") or {}
        kind = frame.get("type")
        if kind == "ack" or kind == "error":
            frame_id = payload.get("frame_id")
            if kind == "ack":
                self.acked[frame_id] = (payload.get("seq"), payload.get("hash"))
            else:
                self.errors.append(frame)
            if frame_id in self.in_flight:
                self._settled(frame_id, kind == "ack", at)
                return
            future = self.waiting.pop(frame_id, None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        await self.ws.send(_dumps({"type": "ack", "payload": {"frame_id": frame.get("id")}}))
        self.inbox.put_nowait((at, frame))

    def _settled(self, frame_id: str, acked: bool, at: float) -> None:
        sent = self.in_flight.pop(frame_id)
        if acked:
            self.pumped.append(frame_id)
            self.latencies.append((at - sent) * 1000)
        assert self.slots is not None
        self.slots.release()
        if not self.in_flight:
            self.drained.set()

    async def pump(
        self, window: int, until: float, rate: float | None = None, start: float = 0.0
    ) -> list[float]:
        """Send orientation frames until `until` (perf_counter), `window` in flight at most,
        at `rate` frames/s when given, the first `start` seconds from now; ack latencies in
        ms. No task or future per frame: the reader settles them, so the client stays cheap
        beside the server."""
        self.slots = asyncio.Semaphore(window)
        self.latencies = []
        next_at = time.perf_counter() + start
        await asyncio.sleep(start)
        while time.perf_counter() < until:
            await self.slots.acquire()
            frame = self.frame()
            self.drained.clear()
            self.in_flight[frame["id"]] = self.sent_at[frame["id"]] = time.perf_counter()
            await self.ws.send(_dumps(frame))
            if rate:
                next_at += 1 / rate
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        if self.in_flight:
            await asyncio.wait_for(self.drained.wait(), 300)
        return self.latencies


class Operator:
    """An operator's browser: logged in through the real login form (session + CSRF)."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.cookies: dict[str, str] = {}
        page = self._request("GET", "/login/")
        token = _CSRF_INPUT.search(page).group(1)  # type: ignore[union-attr]
        login = {"username": username, "password": password, "csrfmiddlewaretoken": token}
        self._request("POST", "/login/", login)
        if "sessionid" not in self.cookies:
            raise RuntimeError(f"logging in as {username} failed")

    def _request(self, method: str, path: str, data: dict | None = None, htmx: bool = False) -> str:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)  # noqa: S310
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            request.add_header("X-CSRFToken", self.cookies.get("csrftoken", ""))
            request.add_header("Referer", self.base + path)
        if htmx:
            request.add_header("HX-Request", "true")
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(request, timeout=30) as response:
                self._keep(response.headers)
                return response.read().decode()
        except urllib.error.HTTPError as error:
            self._keep(error.headers)
            if error.code >= 400:
                raise
            return ""

    def _keep(self, headers: Any) -> None:
        for value in headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]

    def socket_path(self, page: str) -> str:
        """The live socket a page opens (its `ws-connect`), as the browser would."""
        found = _WS_CONNECT.search(self._request("GET", page))
        if found is None:
            raise RuntimeError(f"{page} opens no live socket")
        return html.unescape(found.group(1))

    def decide(self, escalation: int, verdict: str = "approve") -> None:
        self._request("POST", f"/escalations/{escalation}/decide/", {"verdict": verdict}, htmx=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Viewer:
    """A live page's socket. Records when each benchmark frame first shows up in a fragment
    (its timeline row holds the raw frame, so its id), and whether rows came in seq order."""

    def __init__(
        self, ws_base: str, path: str, operator: Operator, sent_at: dict[str, float], keep=False
    ):
        self.url = ws_base + path
        self.keep = keep  # queue every message (the inbox reads them), not just the first
        self.origin = operator.base
        self.cookie = f"sessionid={operator.cookies['sessionid']}"
        self.sent_at = sent_at
        self.shown: dict[str, float] = {}
        self.last_seq = -1
        self.in_order = True
        self.messages: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self.ws: Any = None
        self.reader: asyncio.Task | None = None

    async def open(self) -> float:
        """Connect; seconds until the page's first fragment."""
        started = time.perf_counter()
        self.ws = await websockets.connect(
            self.url,
            additional_headers={"Origin": self.origin, "Cookie": self.cookie},
            max_size=32 * 1024 * 1024,
            ping_interval=None,
        )
        self.reader = asyncio.create_task(self._read())
        at, _ = await asyncio.wait_for(self.messages.get(), 30)
        return at - started

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self.ws:
                at = time.perf_counter()
                self.take(text, at)
                if self.keep or self.messages.empty():
                    self.messages.put_nowait((at, text))

    def take(self, text: str, at: float) -> None:
        rows = []
        for piece in text.split(_ROW_SPLIT)[1:]:
            ids = ID_RE.findall(piece.split("</li>", 1)[0])
            seq = piece.split('"', 1)[0]
            if ids and seq.isdigit():
                rows.append((int(seq), ids[0]))
        for seq, frame_id in reversed(rows):  # newest first in a fragment
            if seq <= self.last_seq or frame_id in self.shown:
                self.in_order = False
            self.last_seq = max(self.last_seq, seq)
            self.shown.setdefault(frame_id, at)

    def latencies(self) -> list[float]:
        return [
            (at - self.sent_at[frame_id]) * 1000
            for frame_id, at in self.shown.items()
            if frame_id in self.sent_at
        ]
