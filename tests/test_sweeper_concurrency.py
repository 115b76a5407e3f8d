"""Two sweepers running at the same moment never apply the same change twice: each silent
agent, unanswered request and undecided escalation is claimed by one of them only.

Row-level races need a database with row-level concurrency: this runs on PostgreSQL (CI runs
the suite a second time with DATABASE_URL). SQLite serialises all writers, so there is no
race to lose there.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F

from coordination import sweeper
from coordination.models import Agent, Frame, Presence
from coordination.models.work import Escalation, EscalationStatus, RequestStatus, RouteRequest
from tests.factories import FLEET, frame, live_connection, online, send, verified_trace
from tests.seed import KEY

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL (set DATABASE_URL): SQLite serialises writers, so two "
        "sweepers cannot race on a row there",
    ),
]

N = 12
AGO = timedelta(hours=1)


@pytest.fixture
def overdue(agents):
    """N silent-to-be agents, N unanswered requests and N undecided escalations, every
    deadline an hour past."""
    online(agents.metrics.name)
    for i in range(N):
        agent, _ = Agent.create_with_token(f"worker-{i}", scope=FLEET)
        send(agent, frame(f"hello-{i}", "hello", {"coordination_id": KEY}))
        send(agents.triage, frame(f"req-{i}", "route_request", {"target": "metrics-agent"}))
        send(
            agents.metrics,
            frame(
                f"resp-{i}",
                "route_response",
                {"in_reply_to": f"other-{i}", "branches": [{"action": "escalate"}]},
            ),
        )
    for worker in Agent.objects.filter(name__startswith="worker-"):
        live_connection(worker)
    Agent.objects.filter(name__startswith="worker-").update(
        presence=Presence.ONLINE, heartbeat_deadline=F("heartbeat_deadline") - AGO
    )
    RouteRequest.objects.update(deadline=F("deadline") - AGO)
    Escalation.objects.update(deadline=F("deadline") - AGO)
    assert RouteRequest.objects.filter(status=RequestStatus.OPEN).count() == N
    assert Escalation.objects.filter(status=EscalationStatus.PENDING).count() == N


def race(passes: int = 2) -> list[list[str]]:
    """`passes` sweeper passes released at the same instant, each on its own connection."""
    start = threading.Barrier(passes)
    results: list[list[str]] = [[] for _ in range(passes)]
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            start.wait()
            results[slot] = sweeper.sweep()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(passes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_two_sweepers_mark_each_silent_agent_once(overdue):
    first, second = race()

    silenced = [line for line in first + second if ": silent" in line]
    assert len(silenced) == N
    assert Agent.objects.filter(name__startswith="worker-", presence=Presence.SILENT).count() == N
    frames = Frame.objects.filter(coordination__key=KEY, type="presence")
    assert frames.count() == N
    assert len({f.payload["agent"] for f in frames}) == N


def test_two_sweepers_time_out_each_request_once(overdue):
    first, second = race()

    timed_out = [line for line in first + second if "timed out" in line]
    assert len(timed_out) == N
    assert RouteRequest.objects.filter(status=RequestStatus.ESCALATED).count() == N
    steps = Frame.objects.filter(coordination__key=KEY, sender="ltpdash", type="route_response")
    escalate_steps = [s for s in steps if "no response from" in s.payload["branches"][0]["reason"]]
    assert len(escalate_steps) == N
    assert Escalation.objects.filter(route_request__isnull=False).count() == N


def test_two_sweepers_expire_each_escalation_once(overdue):
    first, second = race()

    expired = [line for line in first + second if "default applied" in line]
    assert len(expired) == N
    assert Escalation.objects.filter(status=EscalationStatus.REJECTED).count() == N
    decisions = Frame.objects.filter(coordination__key=KEY, ltp_id__startswith="decision-")
    assert decisions.count() == N


def test_the_chain_stays_whole_when_sweepers_race(overdue):
    race(passes=3)

    verdict = verified_trace()
    assert verdict.ok, verdict.why
