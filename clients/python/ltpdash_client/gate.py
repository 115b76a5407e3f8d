"""Ask a human before a call: the approval gate.

    gate = Gate("ws://127.0.0.1:8000/ws/agent/", token, coordination="refunds-7",
                role="refund-agent", intent="refund duplicated charges",
                guardrails=["no transfer over 10k EUR without a human"])

    @gate.require_approval(action="transfer_money", reason="refund duplicated charge")
    def transfer(account: str, amount_eur: int) -> str: ...

    transfer("acme", 5000)   # blocks until a human decides, then runs (maybe with amended args)

The call goes to ltpdash as a `route_request` to `human` carrying `action` and `args`; the
console shows them as the proposal, an approver may amend the arguments, and the decision
comes back as a `route_response` from `human:<user>` (or from ltpdash when the deadline's
default applies). Nothing polls: one websocket, its frames dispatched to the waiting calls
by `in_reply_to`. The socket reconnects by itself (LtpClient); ltpdash keeps the decision in
its outbox until this side acknowledges it, so a decision made while the server restarted
still arrives, once.

The gate runs its own event loop in a daemon thread, so sync code in any thread and async
code on any loop can share one gate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import json
import threading
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from ltpdash_client.client import LtpClient

DEFAULT_DEADLINE = 900.0  # ltpdash's LTPDASH_ESCALATION_DEADLINE default
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    """An approval: who approved, their note, and the arguments to run with."""

    approved: bool
    decided_by: str
    note: str
    instructions: str
    args: dict[str, Any]  # what to run with: the amended arguments, else the original ones
    original_args: dict[str, Any]
    amended: bool
    frame: dict[str, Any] = field(repr=False)


class Rejected(Exception):
    """A human (or the deadline's default) rejected the call: it must not run."""

    def __init__(self, note: str, instructions: str = "", decided_by: str = "") -> None:
        super().__init__(f"rejected by {decided_by or 'ltpdash'}: {note}")
        self.note, self.instructions, self.decided_by = note, instructions, decided_by


class DecisionTimeout(TimeoutError):
    """No decision arrived within the gate's timeout."""


def decision_from(frame: dict[str, Any], args: dict[str, Any]) -> Decision:
    """Read a decision frame (PROTOCOL §4); raise `Rejected` for a rejection."""
    payload = frame.get("payload") or {}
    branch = (payload.get("branches") or [{}])[0]
    note = str(branch.get("reason") or "")
    instructions = str(payload.get("instructions") or "")
    decided_by = str(branch.get("decided_by") or frame.get("from") or "")
    if branch.get("action") != "approve":
        raise Rejected(note, instructions, decided_by)
    amended = branch.get("amended_args")
    return Decision(
        approved=True,
        decided_by=decided_by,
        note=note,
        instructions=instructions,
        args=dict(amended) if isinstance(amended, dict) else dict(args),
        original_args=dict(args),
        amended=isinstance(amended, dict),
        frame=frame,
    )


class Gate:
    """One agent's connection to ltpdash, and the calls it is waiting on."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        coordination: str,
        name: str = "gate",
        role: str | None = None,
        intent: str | None = None,
        guardrails: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        timeout: float = DEFAULT_DEADLINE,
        grace: float = 30.0,
    ) -> None:
        """`timeout`: seconds to wait for a decision; set it to the coordination's escalation
        deadline. ltpdash decides at its deadline (reject, or moves the question to the
        admins, which restarts the wait here), so `grace` only covers the sweeper's delay."""
        self.url, self.token, self.coordination, self.name = url, token, coordination, name
        self.orientation = {
            k: v
            for k, v in {"role": role, "intent": intent, "guardrails": list(guardrails)}.items()
            if v
        }
        self.capabilities = list(capabilities)
        self.timeout, self.grace = timeout, grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: LtpClient | None = None
        self._waiting: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._connecting: asyncio.Lock | None = None  # made on the gate's loop

    # -- the gate's own loop --------------------------------------------------------------

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coroutine` on the gate's loop, started on first use."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ltpdash-gate", daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._submit(coroutine).result()

    async def _connected(self) -> LtpClient:
        self._connecting = self._connecting or asyncio.Lock()
        async with self._connecting:  # two first calls at once open one socket
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> LtpClient:
        client = LtpClient(
            self.url,
            self.token,
            self.name,
            coordination_id=self.coordination,
            hello={"role": self.orientation.get("role", ""), "capabilities": self.capabilities},
        )
        await client.connect()
        if self.orientation:  # declared once; ltpdash keeps it for every later frame
            await client.send({"type": "orientation", "payload": self.orientation})
        self._dispatcher = asyncio.create_task(self._dispatch(client))
        return client

    async def _dispatch(self, client: LtpClient) -> None:
        while True:
            frame = await client.inbox.get()
            payload = frame.get("payload") or {}
            queue = self._waiting.get(str(payload.get("in_reply_to")))
            if frame.get("type") == "route_response" and queue is not None:
                queue.put_nowait(frame)

    # -- asking -----------------------------------------------------------------------------

    async def _ask(self, action: str, args: dict[str, Any], reason: str) -> Decision:
        client = await self._connected()
        request_id = f"{self.name}-call-{uuid.uuid4().hex[:16]}"
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiting[request_id] = replies
        try:
            payload = {"target": "human", "need": reason, "action": action, "args": args}
            await client.send({"type": "route_request", "id": request_id, "payload": payload})
            return await self._decision(replies, args)
        finally:
            del self._waiting[request_id]

    async def _decision(
        self, replies: asyncio.Queue[dict[str, Any]], args: dict[str, Any]
    ) -> Decision:
        while True:
            try:
                frame = await asyncio.wait_for(replies.get(), self.timeout + self.grace)
            except TimeoutError:
                waited = self.timeout + self.grace
                raise DecisionTimeout(f"no decision within {waited:.0f}s") from None
            branch = ((frame.get("payload") or {}).get("branches") or [{}])[0]
            if branch.get("action") in {"approve", "reject"}:
                return decision_from(frame, args)
            # ltpdash's own steps ("escalate", a move to the admins' tier): keep waiting,
            # with a fresh deadline after a tier move.

    async def arequest(self, action: str, args: dict[str, Any], reason: str) -> Decision:
        """Ask for approval from async code; return the Decision or raise `Rejected`."""
        return await asyncio.wrap_future(self._submit(self._ask(action, args, reason)))

    def request(self, action: str, args: dict[str, Any], reason: str) -> Decision:
        """Ask for approval from sync code (any thread); block until decided."""
        return self._run(self._ask(action, args, reason))

    def require_approval(self, *, action: str, reason: str) -> Callable[[F], F]:
        """Gate a function: each call asks first, then runs with the approved (possibly
        amended) arguments, or raises `Rejected` without running."""

        def decorate(function: F) -> F:
            signature = inspect.signature(function)

            def arguments(*a: Any, **kw: Any) -> dict[str, Any]:
                bound = signature.bind(*a, **kw)
                bound.apply_defaults()
                return dict(bound.arguments)

            def call(decision: Decision) -> Any:
                bound = signature.bind(**decision.args)
                return function(*bound.args, **bound.kwargs)

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def agated(*a: Any, **kw: Any) -> Any:
                    decision = await self.arequest(action, arguments(*a, **kw), reason)
                    return await call(decision)

                return agated  # type: ignore[return-value]

            @functools.wraps(function)
            def gated(*a: Any, **kw: Any) -> Any:
                return call(self.request(action, arguments(*a, **kw), reason))

            return gated  # type: ignore[return-value]

        return decorate

    # -- orientation and context --------------------------------------------------------

    async def _declare(self, orientation: dict[str, Any]) -> None:
        self.orientation = orientation
        client = await self._connected()
        await client.send({"type": "orientation", "payload": orientation})

    async def adeclare(
        self, role: str, intent: str, guardrails: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Change the orientation this gate's agent declares (usually set once, above)."""
        orientation = {"role": role, "intent": intent, "guardrails": list(guardrails)}
        await asyncio.wrap_future(self._submit(self._declare(orientation)))
        return orientation

    def context(self) -> dict[str, Any]:
        """What the coordination looks like now (GET /api/v1/coordinations/<id>/context):
        latest snapshot, every agent's orientation, open requests, pending escalations."""
        parts = urlsplit(self.url)
        path = f"/api/v1/coordinations/{quote(self.coordination, safe='')}/context"
        scheme = "https" if parts.scheme == "wss" else "http"
        request = urllib.request.Request(  # noqa: S310 (the scheme is http or https)
            urlunsplit((scheme, parts.netloc, path, "", "")),
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.load(response)

    @property
    def reconnects(self) -> int:
        """How many times the socket reconnected (transparently) since the gate opened."""
        return self._client.reconnects if self._client is not None else 0

    def close(self) -> None:
        """Close the socket and stop the gate's loop."""
        if self._loop is None:
            return
        if self._dispatcher is not None:
            self._loop.call_soon_threadsafe(self._dispatcher.cancel)
            self._dispatcher = None
        if self._client is not None:
            self._run(self._client.close())
            self._client = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
