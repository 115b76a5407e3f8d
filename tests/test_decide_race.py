"""Two approvers decide the same escalation at the same moment, over real HTTP.

Runs on whatever database the suite runs on (the embedded SQLite by default; PostgreSQL when
DATABASE_URL is set): the referee is the database, not the process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from coordination.models import HUMAN_PREFIX, Delivery, Escalation, EscalationStatus, Frame
from tests.factories import Operator, seed

pytestmark = [pytest.mark.e2e]


@pytest.mark.parametrize("verdicts", [("approve", "approve"), ("approve", "reject")])
def test_two_concurrent_decisions_store_and_send_exactly_one(live, agents, operators, verdicts):
    escalation = seed(agents)
    alice = Operator(live.http, operators["alice"])
    bob = Operator(live.http, operators["bob"])
    start = threading.Barrier(2)

    def decide(operator: Operator, verdict: str):
        start.wait()  # both requests leave together
        return operator.post(
            f"/escalations/{escalation.pk}/decide/",
            {"verdict": verdict, "note": f"{verdict} from the race"},
            htmx=True,
        )

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(decide, [alice, bob], verdicts))

    assert [r.status for r in replies] == [200, 200]
    escalation.refresh_from_db()
    winner = escalation.decided_by_name
    assert winner in {"alice", "bob"}
    assert escalation.status in {EscalationStatus.APPROVED, EscalationStatus.REJECTED}
    decisions = Frame.objects.filter(sender__startswith=HUMAN_PREFIX, type="route_response")
    assert decisions.count() == 1
    assert decisions.get().sender == HUMAN_PREFIX + winner
    # Owed once to the agent that escalated and once to the agent whose request it answers.
    owed = Delivery.objects.filter(frame__in=decisions).values_list("agent__name", flat=True)
    assert sorted(owed) == ["metrics-agent", "triage-agent"]
    loser = replies[1] if winner == "alice" else replies[0]
    assert f"{winner} {escalation.status} this at" in loser.body
    assert "was not sent." in loser.body
    assert Escalation.objects.filter(status=EscalationStatus.PENDING).count() == 0
