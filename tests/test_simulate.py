"""`manage.py simulate --once`: four real agents over real websockets play incident-4821
against a real daphne, with a real sweeper process noticing the silent specialist. It
returns with an escalation waiting for a human.

The server, the sweeper and the simulator are three processes sharing the test database, as
in the README's run command. They get a short heartbeat timeout so the silence shows within
seconds instead of half a minute.
"""

import io
import os
import re
import subprocess
import sys

import pytest
from django.core.management import call_command

from coordination.decisions import APPROVE, decide
from coordination.models import (
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
    RequestStatus,
    RouteRequest,
)
from coordination.trace import verify_trace
from tests.conftest import ROOT, _database_env, start_daphne, stop_daphne

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY = "incident-4821"
FAST = {"LTPDASH_HEARTBEAT_TIMEOUT": "3", "LTPDASH_SWEEP_INTERVAL_MS": "200"}


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


@pytest.fixture
def server_and_sweeper(transactional_db, tmp_path):
    env = {**os.environ, **_database_env(), "DJANGO_SETTINGS_MODULE": "ltpdash.settings", **FAST}
    server = start_daphne(tmp_path, FAST)
    log = tmp_path / "sweep.log"
    sweeper = subprocess.Popen(
        manage("sweep"), cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    yield server, env, log
    sweeper.terminate()
    sweeper.wait(timeout=10)
    stop_daphne(server)


def simulate_once(server, env) -> subprocess.CompletedProcess:
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


def test_simulate_once_leaves_an_incident_with_an_escalation_pending(server_and_sweeper, operators):
    server, env, sweep_log = server_and_sweeper
    run = simulate_once(server, env)
    assert "escalated" in run.stdout

    coordination = Coordination.objects.get(key=KEY)
    assert coordination.state == "diagnosis pending human approval"

    escalation = Escalation.objects.get(coordination=coordination)
    assert escalation.status == EscalationStatus.PENDING
    assert escalation.agent.name == "metrics-agent-b"
    assert escalation.reason == "guardrail: cannot page DB"
    # It says what approving it does (issue #11).
    assert escalation.proposed_action == "page_db_oncall"
    assert escalation.proposed_args == {"service": "orders-db"}

    # The silent specialist: noticed by the sweeper process, recorded, and routed around.
    assert "metrics-agent: silent" in sweep_log.read_text()
    chain = list(coordination.frames.order_by("seq"))
    silent = [f for f in chain if f.type == "presence" and f.payload["agent"] == "metrics-agent"]
    assert silent and silent[0].payload["presence"] == "silent"
    steps = [
        f.payload["branches"][0]
        for f in chain
        if f.sender == "ltpdash" and f.type == "route_response"
    ]
    assert steps[0] == {
        "action": "route",
        "reason": "need 'database' routed to db-agent by the routing table",
        "target": "db-agent",
    }
    fallback = next(s for s in steps if s["action"] == "fallback")
    assert re.fullmatch(
        r"metrics-agent silent since \d\d:\d\d:\d\d; routed to metrics-agent-b", fallback["reason"]
    ), fallback["reason"]
    assert silent[0].seq < next(f.seq for f in chain if f.payload.get("branches") == [fallback])

    requests = RouteRequest.objects.filter(coordination=coordination).order_by("created_at")
    assert [(r.assigned_to.name, r.status) for r in requests] == [
        ("db-agent", RequestStatus.ANSWERED),
        ("metrics-agent-b", RequestStatus.ANSWERED),
    ]
    # Every step of the triage agent carries the guardrails it declared.
    request_frame = requests[1].frame
    assert request_frame.orientation.payload["guardrails"] == ["no production writes"]

    out = io.StringIO()
    call_command("exporttrace", KEY, stdout=out)
    verdict = verify_trace(out.getvalue().splitlines())
    assert verdict.ok, verdict.why
    assert verdict.entries == Frame.objects.filter(coordination=coordination).count()

    # ... and a human can decide what it left waiting.
    assert decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call").decided
