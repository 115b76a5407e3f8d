"""Shared fixtures: a pair of agents, the operator trio and clients logged in as them, and real
daphne processes. The helpers they use are in factories.py."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from coordination.batching import stop_lanes
from coordination.models import Agent, Connection
from coordination.sharing import stop_rendering
from tests.emptying import empty_by_deleting
from tests.factories import FLEET, ROOT, eventually, manage, server_env, start_daphne, stop_daphne

LTP = Path(__file__).resolve().parent / "fixtures" / "ltp"


@pytest.fixture(autouse=True)
def _live_render_threads_closed():
    """Live pages render on threads of their own, each with a database connection: closed
    after each test (nothing to do unless a page rendered in this process)."""
    yield
    stop_rendering()


@pytest.fixture(autouse=True)
def _one_ingest_lane_in_this_process(settings):
    """Sockets served in this process (channels' communicators) store their frames on Django's
    thread for sync code. Several lanes run on pool threads that keep their database
    connections, which would hold the test database open at teardown; a test that asks for
    several has their threads and connections closed after it (the real daphne processes of
    tests/test_group_commit.py exercise several lanes end to end)."""
    settings.LTP_INGEST_LANES = 1
    yield
    stop_lanes()


@pytest.fixture
def ltp_fixtures() -> Path:
    return LTP


class AgentPair:
    def __init__(self):
        self.triage, self.triage_token = Agent.create_with_token("triage-agent", scope=FLEET)
        self.metrics, self.metrics_token = Agent.create_with_token("metrics-agent", scope=FLEET)


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
    from coordination.roles import ensure_roles  # the console's role helpers

    # What roles.grant does for a new user (its role's group, the group's permissions),
    # with the groups made once rather than once per grant.
    groups = ensure_roles()
    users = {}
    for name, role in [
        ("alice", "approver"),
        ("bob", "approver"),
        ("vic", "viewer"),
        ("ada", "admin"),
        ("oscar", None),
    ]:
        user = User.objects.create(username=name, password=_password_hash("pw-" + name))
        if role:
            user.groups.add(groups[role])
        users[name] = user
    return users


@pytest.fixture
def client_for(operators):
    """`client_for("alice")`: a test client logged in as that operator (`None`: anonymous).
    Keyword arguments go to the Client."""

    def logged_in(name: str | None, **kwargs) -> Client:
        client = Client(**kwargs)
        if name is not None:
            client.force_login(operators[name])
        return client

    return logged_in


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
    # database under it deadlocks on PostgreSQL. Wait until it has settled (or give up). Only
    # its own rows: those a test made itself (factories.live_connection) never go, and waiting
    # for them cost ten seconds each time.
    its_rows = Connection.objects.filter(server__endswith=f":{daphne_server.process.pid}")
    with contextlib.suppress(AssertionError):
        eventually(lambda: not its_rows.exists(), timeout=10)


# The simulated incident's agents get a short heartbeat timeout so that the silence shows
# within seconds instead of half a minute.
FAST_SIMULATION = {"LTPDASH_HEARTBEAT_TIMEOUT": "3", "LTPDASH_SWEEP_INTERVAL_MS": "200"}


@pytest.fixture
def server_and_sweeper(transactional_db, tmp_path):
    """A daphne and a `manage.py sweep` process of their own, as in the README's run command:
    the server, its environment (for `simulate`) and the sweeper's log."""
    env = server_env(FAST_SIMULATION)
    server = start_daphne(tmp_path, FAST_SIMULATION)
    log = tmp_path / "sweep.log"
    sweeper = subprocess.Popen(
        manage("sweep"), cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    yield server, env, log
    sweeper.terminate()
    sweeper.wait(timeout=10)
    stop_daphne(server)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: tests that committed are cleaned up after by deleting the rows
    they left (tests/emptying.py), not by Django's slower flush of every table. And: async
    tests reach the ORM through asgiref's one sync thread, whose connection outlives the test
    (CONN_MAX_AGE). Close it before the test database is dropped, or PostgreSQL refuses to
    drop a database that is still in use."""
    with pytest.MonkeyPatch.context() as patch:
        with django_db_blocker.unblock():
            empty_by_deleting(patch)
        yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


# Property-based cases run this session, per transport (tests/test_properties.py).
PROPERTY_CASES = {"socket": 0, "http": 0, "urls": 0}
# Tests marked mode_independent that this pass deselected.
DESELECTED_AS_MODE_INDEPENDENT: list[str] = []


def pytest_collection_modifyitems(config, items):
    """Tests marked `mode_independent` (pure functions: canonical JSON, the trace verifier,
    conformance rules, the client's packaging) touch neither the database nor the channel
    layer, so a pass on PostgreSQL or Redis would only repeat them: the embedded pass runs
    them and the other deselects them (named in the summary). A marked test that asks for
    the database is a mistake in the marking, and stops the run."""
    from django.conf import settings

    marked = [item for item in items if item.get_closest_marker("mode_independent")]
    for item in marked:
        uses = {"db", "transactional_db", "live", "daphne_server"} & set(item.fixturenames)
        if uses or item.get_closest_marker("django_db"):
            raise pytest.UsageError(f"{item.nodeid}: marked mode_independent, uses the database")
    if not (settings.DATABASE_URL or settings.REDIS_URL) or not marked:
        return
    DESELECTED_AS_MODE_INDEPENDENT.extend(item.nodeid for item in marked)
    config.hook.pytest_deselected(items=marked)
    items[:] = [item for item in items if not item.get_closest_marker("mode_independent")]


def pytest_terminal_summary(terminalreporter):
    if DESELECTED_AS_MODE_INDEPENDENT:
        files = sorted({nodeid.split("::")[0] for nodeid in DESELECTED_AS_MODE_INDEPENDENT})
        terminalreporter.write_line(
            f"mode-independent: {len(DESELECTED_AS_MODE_INDEPENDENT)} tests deselected in this "
            f"pass (PostgreSQL/Redis); the embedded pass runs them: {', '.join(files)}"
        )
    if any(PROPERTY_CASES.values()):
        terminalreporter.write_line(
            f"hypothesis: {sum(PROPERTY_CASES.values())} cases "
            f"(socket {PROPERTY_CASES['socket']}, http {PROPERTY_CASES['http']}, "
            f"coordination URLs {PROPERTY_CASES['urls']})"
        )
