"""What the test modules build and do in common: frames and how agents send them, agents online,
the seed flow in-process, clients and sockets, operators logged in, commands run in-process,
real daphne processes, and waiting until something is true.

Fixtures live in conftest.py; the seed flow's bundles in seed.py.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from ltpdash_client import LtpClient

from coordination.ingest import ingest
from coordination.models import (
    Agent,
    Connection,
    Coordination,
    Delivery,
    Escalation,
    Presence,
    RouteRequest,
)
from coordination.processes import daphne_command, free_port, wait_until_serving
from coordination.trace import TraceVerdict, verify_trace
from tests.seed import KEY, SEED_REQUEST_WITH_ID, SEED_RESPONSE_WITH_ID

ROOT = Path(__file__).resolve().parent.parent
TS = 1764000000000  # a fixed ts (ms) for frames whose time does not matter
# The scope of the suite's fleet agents: they may speak in any coordination, as agents whose
# token is scoped to an operator's whole fleet do. Only participation's own tests
# (test_participants.py) make agents without one.
FLEET = "*"

# --- frames and agents ----------------------------------------------------------------------


def frame(
    frame_id: str,
    type: str,
    payload: Any = None,
    *,
    coordination_id: str | None = KEY,
    **fields: Any,
) -> dict:
    """One LTP frame as an agent writes it: in incident-4821 unless `coordination_id` names
    another (`None`: the frame names none); `fields` are added last, replacing any default."""
    data: dict[str, Any] = {"v": "0.1", "id": frame_id, "ts": TS, "type": type}
    if coordination_id is not None:
        data["coordination_id"] = coordination_id
    data["payload"] = {} if payload is None else payload
    return {**data, **fields}


def send(agent: Agent, data: Any) -> list:
    """Ingest as if `agent` sent `data`, publishing nothing (no socket is listening); every
    frame must be accepted. The outcomes, one per frame."""
    outcomes = ingest(agent, data)
    assert all(o.error is None for o in outcomes), [o.error.message for o in outcomes if o.error]
    return outcomes


def ask(agent: Agent, payload: dict, frame_id: str = "req-1") -> RouteRequest:
    """`agent` sends a route_request in incident-4821; the request as ltpdash routed it."""
    send(agent, frame(frame_id, "route_request", payload))
    return RouteRequest.objects.get(requester=agent, ltp_id=frame_id)


def live_connection(agent: Agent) -> None:
    """Give `agent` a live connection row, as an open socket would (presence: connected)."""
    Connection.objects.create(
        agent=agent,
        channel_name="test",
        server="test",
        alive_until=timezone.now() + timedelta(hours=1),
    )


def online(*names: str, connections: int = 1) -> list[Agent]:
    """Mark the agents named online with `connections` live sockets, creating any that does
    not exist yet. Returns them as read before the update."""
    found = []
    for name in names:
        agent = Agent.objects.filter(name=name).first()
        agent = agent or Agent.create_with_token(name, scope=FLEET)[0]
        Agent.objects.filter(pk=agent.pk).update(presence=Presence.ONLINE)
        Connection.objects.filter(agent=agent).delete()
        for _ in range(connections):
            live_connection(agent)
        found.append(agent)
    return found


def seed(agents) -> Escalation:
    """The seed flow (PROTOCOL §2) in-process: one coordination, one pending escalation."""
    online(agents.metrics.name, connections=0)
    agents.metrics.refresh_from_db()
    send(agents.triage, SEED_REQUEST_WITH_ID)
    send(agents.metrics, SEED_RESPONSE_WITH_ID)
    return Escalation.objects.get(coordination__key=KEY)


def coordination() -> Coordination:
    """The seed flow's coordination (incident-4821)."""
    return Coordination.objects.get(key=KEY)


def acked_id(acks: list[dict], type: str) -> str:
    """The frame id of the first ack in `acks` for a frame of `type` (a bundle's frames get
    ids ending in their type)."""
    return next(a["payload"]["frame_id"] for a in acks if type in a["payload"]["frame_id"])


def about(frame_id: str, sender: str = "ltpdash") -> Callable[[dict], bool]:
    """A `where=` for LtpClient.receive: frames from `sender` answering `frame_id`."""
    return lambda f: f["from"] == sender and f["payload"].get("in_reply_to") == frame_id


def post_frames(client: Client, token: str, body: Any):
    """POST /api/v1/frames as the agent holding `token`; `body` as JSON unless it is text."""
    return client.post(
        "/api/v1/frames",
        body if isinstance(body, str | bytes) else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


async def until_message(communicator, text: str, timeout: float = 10) -> str:
    """Messages from `communicator` until one contains `text` (the page may get other updates
    first). A timeout fails the test (and, as Channels' communicator does, stops the consumer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await communicator.receive_from(timeout=max(deadline - loop.time(), 0.01))
        if text in message:
            return message


# --- agents' connections ----------------------------------------------------------------------


def agent_client(server, token: str, name: str, **kwargs: Any) -> LtpClient:
    """An LtpClient to `server` (a Daphne), in incident-4821 unless `coordination_id` is given."""
    kwargs.setdefault("coordination_id", KEY)
    return LtpClient(server.agent_url, token, name, **kwargs)


def triage_client(server, agents, **kwargs: Any) -> LtpClient:
    return agent_client(server, agents.triage_token, "triage-agent", **kwargs)


def metrics_client(server, agents, **kwargs: Any) -> LtpClient:
    return agent_client(server, agents.metrics_token, "metrics-agent", **kwargs)


def agent_socket(token: str) -> WebsocketCommunicator:
    """An agent websocket through the real ASGI router (no network), with a Bearer token."""
    from ltpdash.asgi import application

    return WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Bearer {token}".encode())]
    )


@asynccontextmanager
async def agent_connection(token: str) -> AsyncIterator[WebsocketCommunicator]:
    """An agent socket (`agent_socket`) connected for the block and disconnected after it,
    whatever happens inside."""
    socket = agent_socket(token)
    await socket.connect()
    try:
        yield socket
    finally:
        await socket.disconnect()


async def until_acked(agent: Agent, frame_id: str, timeout: float = 10) -> None:
    """Wait until the outbox records `agent`'s ack of `frame_id` (acks are not answered, so
    the database is the only place to see one arrive)."""
    deliveries = Delivery.objects.filter(agent=agent, ltp_id=frame_id, acked_at__isnull=False)
    await aeventually(
        deliveries.exists,
        timeout=timeout,
        interval=0.02,
        what=f"{agent.name} acknowledged {frame_id}",
    )


# --- operators --------------------------------------------------------------------------------


def session_cookie(user) -> str:
    """The session id of a fresh login as `user`, for sockets and real HTTP."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def ui_socket(
    path: str, user=None, origin: str | None = "http://testserver"
) -> tuple[WebsocketCommunicator, bool]:
    """A console socket through the real ASGI router (session and Origin checks included),
    logged in as `user` if one is given; the communicator and whether it was admitted."""
    from ltpdash.asgi import application

    headers = [(b"host", b"testserver")]
    if origin:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        session = await sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={session}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


@dataclass
class Reply:
    status: int
    body: str
    headers: dict
    set_cookies: list[str]

    def json(self):
        return json.loads(self.body)


class Operator:
    """An operator's browser session against a real server, over plain HTTP (urllib)."""

    def __init__(self, base: str, user):
        self.base = base
        self.cookies = {"sessionid": session_cookie(user)}
        self.opener = urllib.request.build_opener(_NoRedirect())
        page = self.get("/coordinations/")
        assert page.status == 200, page.status
        self.cookies["csrftoken"] = _csrf_cookie(page)

    def _request(self, method: str, path: str, data=None, headers=None) -> Reply:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            request.add_header("X-CSRFToken", self.cookies["csrftoken"])
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self.opener.open(request, timeout=30) as response:
                return _reply(response.status, response.read(), response.headers)
        except urllib.error.HTTPError as error:
            return _reply(error.code, error.read(), error.headers)

    def get(self, path: str) -> Reply:
        return self._request("GET", path)

    def post(self, path: str, data: dict, htmx: bool = False) -> Reply:
        return self._request("POST", path, data, {"HX-Request": "true"} if htmx else None)


def _reply(status: int, body: bytes, headers) -> Reply:
    return Reply(status, body.decode(), dict(headers), headers.get_all("Set-Cookie") or [])


def _csrf_cookie(reply: Reply) -> str:
    for value in reply.set_cookies:
        if value.startswith("csrftoken="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError("the page set no csrftoken cookie")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# --- commands in this process -------------------------------------------------------------------


def command(*args: str) -> str:
    """`manage.py *args` run in this process; what it wrote to stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def exported_trace(key: str = KEY) -> str:
    return command("exporttrace", key)


def verified_trace(key: str = KEY) -> TraceVerdict:
    """The verifier's verdict on `exporttrace key`."""
    return verify_trace(exported_trace(key).splitlines())


def sweep_once(**overrides: Any) -> str:
    """One `sweep --once` pass in this process, with `overrides` as settings; its report."""
    with override_settings(**overrides):
        return command("sweep", "--once")


averified_trace = sync_to_async(verified_trace)
asweep_once = sync_to_async(sweep_once)


# --- real servers -------------------------------------------------------------------------------

# Agents' sockets look for owed frames no event announced (the sweeper's, from this process) this
# often; the default two seconds would make every such test wait that long.
FAST_OUTBOX = {"LTPDASH_OUTBOX_CHECK_MS": "200"}


def database_env() -> dict[str, str]:
    """Point another process at the test database pytest-django created."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return {"LTPDASH_SQLITE_PATH": str(name)}
    parts = urlsplit(settings.DATABASE_URL)
    return {"DATABASE_URL": urlunsplit(parts._replace(path="/" + name))}


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process (daphne, sweep, simulate) on the test database."""
    return {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "ltpdash.settings",
        **(extra or {}),
    }


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


class Daphne:
    def __init__(self, port: int, process: subprocess.Popen, log: Path):
        self.port, self.process, self.log = port, process, log
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    @property
    def agent_url(self) -> str:
        return f"{self.ws}/ws/agent/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def post_frames_live(server: Daphne, token: str, body: Any) -> dict:
    """POST /api/v1/frames to a real server as the agent holding `token` (so the events reach
    live pages); the answer's JSON."""
    request = urllib.request.Request(
        server.http + "/api/v1/frames",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start_daphne(
    tmp_path: Path, extra_env: dict[str, str] | None = None, port: int | None = None
) -> Daphne:
    """A daphne process on a free port, or on `port` (a restart where agents reconnect)."""
    port = port or free_port()
    env = server_env({"LTPDASH_LOG_LEVEL": "WARNING", **FAST_OUTBOX, **(extra_env or {})})
    log = tmp_path / f"daphne-{port}.log"
    process = subprocess.Popen(
        daphne_command("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving("127.0.0.1", port, process)
    except RuntimeError as exc:
        process.kill()
        raise RuntimeError(f"{exc}:\n{log.read_text()}") from None
    return Daphne(port, process, log)


def stop_daphne(server: Daphne) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


def simulate_once(server: Daphne, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`manage.py simulate --once` as its own process, as the README's run command starts it."""
    run = subprocess.run(
        manage("simulate", "--once", "--url", server.agent_url, "--speed", "20"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr + server.output()
    return run


# --- waiting ------------------------------------------------------------------------------------


def eventually(
    predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05, what: str = ""
) -> Any:
    """Call `predicate` until it returns something true, and return that. Another process (or
    thread) is doing the work, so the test waits for the state, not for a duration; after
    `timeout` seconds the test fails naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s in vain until {what or predicate}")
        time.sleep(interval)
    return result


async def aeventually(
    predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05, what: str = ""
) -> Any:
    """`eventually` for async tests. A coroutine function is awaited; a plain function runs
    through sync_to_async, so it may use the ORM."""
    check = predicate if inspect.iscoroutinefunction(predicate) else sync_to_async(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout}s in vain until {what or predicate}")
        await asyncio.sleep(interval)
    return result
