"""Shared fixtures: a pair of agents, the operator trio, and a real daphne process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User

from coordination.models import Agent, Connection, Delivery
from coordination.processes import daphne_command, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
LTP = Path(__file__).resolve().parent / "fixtures" / "ltp"


@pytest.fixture
def ltp_fixtures() -> Path:
    return LTP


class AgentPair:
    def __init__(self):
        self.triage, self.triage_token = Agent.create_with_token("triage-agent")
        self.metrics, self.metrics_token = Agent.create_with_token("metrics-agent")


@pytest.fixture
def agents(db) -> AgentPair:
    return AgentPair()


_PASSWORD_HASHES: dict[str, str] = {}


def _password_hash(raw: str) -> str:
    # Django's default hasher costs ~0.4 s per password on purpose; hash each once per run.
    if raw not in _PASSWORD_HASHES:
        from django.contrib.auth.hashers import make_password

        _PASSWORD_HASHES[raw] = make_password(raw)
    return _PASSWORD_HASHES[raw]


@pytest.fixture
def operators(db):
    """alice approves, vic only views, oscar is an outsider with no role; ada is an admin."""
    from coordination.roles import grant  # the console's role helpers

    users = {}
    for name, role in [
        ("alice", "approver"),
        ("bob", "approver"),
        ("vic", "viewer"),
        ("ada", "admin"),
        ("oscar", None),
    ]:
        user = User.objects.create_user(name)
        user.password = _password_hash("pw-" + name)
        user.save(update_fields=["password"])
        if role:
            grant(user, role)
        users[name] = user
    return users


def _database_env() -> dict[str, str]:
    """Point the daphne process at the test database pytest-django created."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return {"LTPDASH_SQLITE_PATH": str(name)}
    parts = urlsplit(settings.DATABASE_URL)
    return {"DATABASE_URL": urlunsplit(parts._replace(path="/" + name))}


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


def start_daphne(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Daphne:
    port = free_port()
    env = {
        **os.environ,
        **_database_env(),
        "DJANGO_SETTINGS_MODULE": "ltpdash.settings",
        "LTPDASH_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
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


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real daphne serving the project on a free port, for the whole session."""
    server = start_daphne(tmp_path_factory.mktemp("daphne"))
    yield server
    stop_daphne(server)


@pytest.fixture
def live(daphne_server, transactional_db):
    """The session's daphne with a database the test commits to (visible to daphne)."""
    yield daphne_server
    # Daphne records disconnects (presence frames) after the client has gone; flushing the
    # database under it deadlocks on PostgreSQL. Wait until it has settled.
    deadline = time.monotonic() + 10
    while Connection.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, plus: async tests reach the ORM through asgiref's one sync thread,
    whose connection outlives the test (CONN_MAX_AGE). Close it before the test database is
    dropped, or PostgreSQL refuses to drop a database that is still in use."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


def agent_socket(token: str) -> WebsocketCommunicator:
    """An agent websocket through the real ASGI router (no network), with a Bearer token."""
    from ltpdash.asgi import application

    return WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Bearer {token}".encode())]
    )


def live_connection(agent: Agent) -> None:
    """Give `agent` a live connection row, as an open socket would (presence: connected)."""
    from datetime import timedelta

    from django.utils import timezone

    Connection.objects.create(
        agent=agent, channel_name="test", server="test",
        alive_until=timezone.now() + timedelta(hours=1),
    )  # fmt: skip


async def until_acked(agent: Agent, frame_id: str, timeout: float = 10) -> None:
    """Wait until the outbox records `agent`'s ack of `frame_id` (acks are not answered, so
    the database is the only place to see one arrive)."""
    import asyncio

    deliveries = Delivery.objects.filter(agent=agent, ltp_id=frame_id, acked_at__isnull=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await deliveries.aexists():
        if loop.time() > deadline:
            pytest.fail(f"{agent.name} never acknowledged {frame_id}")
        await asyncio.sleep(0.02)


# Property-based cases run this session, per transport (tests/test_properties.py).
PROPERTY_CASES = {"socket": 0, "http": 0, "urls": 0}


def pytest_terminal_summary(terminalreporter):
    if any(PROPERTY_CASES.values()):
        terminalreporter.write_line(
            f"hypothesis: {sum(PROPERTY_CASES.values())} cases "
            f"(socket {PROPERTY_CASES['socket']}, http {PROPERTY_CASES['http']}, "
            f"coordination URLs {PROPERTY_CASES['urls']})"
        )
