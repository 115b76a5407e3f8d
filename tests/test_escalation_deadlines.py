"""Escalation deadlines: at the deadline the default applies (reject, the safe one) or the
escalation moves to the next tier (admins); the reason is in the chain and the agent
receives the decision, over a real daphne.

The sweeper runs as one `sweep --once` pass in the test process, after the stored deadline
has been moved into the past as if the time had gone by.
"""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db.models import F
from django.utils import timezone

from coordination.decisions import APPROVE, decide
from coordination.models import (
    Coordination,
    Delivery,
    Escalation,
    EscalationStatus,
    Frame,
)
from tests.factories import (
    about,
    acked_id,
    aeventually,
    asweep_once,
    averified_trace,
    metrics_client,
)
from tests.seed import KEY, SEED_RESPONSE

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@sync_to_async
def pass_deadline() -> Escalation:
    """As if the escalation's whole waiting time had gone by: created_at and deadline move
    back together, so the recorded wait stays what it was."""
    escalation = Escalation.objects.get(coordination__key=KEY, status=EscalationStatus.PENDING)
    gone = escalation.deadline - timezone.now() + timedelta(seconds=1)
    Escalation.objects.filter(pk=escalation.pk).update(
        deadline=F("deadline") - gone, created_at=F("created_at") - gone
    )
    return escalation


async def deadline_passes(default: str = "reject") -> tuple[Escalation, str]:
    """The pending escalation's deadline goes by, then one sweep pass: the escalation, and
    what the pass wrote."""
    escalation = await pass_deadline()
    return escalation, await sweep(default)


async def trace_verifies() -> None:
    verdict = await averified_trace()
    assert verdict.ok, verdict.why


async def escalate(metrics) -> str:
    """metrics-agent sends the seed's response, whose branch escalates; the id of that frame
    (what the decision answers)."""
    return acked_id(await metrics.send(SEED_RESPONSE), "route_response")


async def sweep(default: str = "reject") -> str:
    """One sweep pass that applies `default` at escalation deadlines."""
    return await asweep_once(ESCALATION_DEFAULT=default)


async def test_undecided_escalation_gets_the_reject_default_and_the_agent_receives_it(
    live, agents, settings
):
    async with metrics_client(live, agents) as metrics:
        escalated = await escalate(metrics)
        escalation, swept = await deadline_passes()
        assert f"{KEY}: escalation {escalation.pk} default applied: rejected" in swept

        decision = await metrics.receive(type="route_response", where=about(escalated))
        (branch,) = decision["payload"]["branches"]
        assert branch["action"] == "reject"
        assert branch["decided_by"] == "ltpdash"
        assert branch["reason"] == (
            f"no decision within {settings.ESCALATION_DEADLINE}s; default applied: reject"
        )
        # Applied once: a second pass has nothing to do.
        assert await sweep() == ""

    @sync_to_async
    def check():
        escalation = Escalation.objects.get(coordination__key=KEY)
        assert escalation.status == EscalationStatus.REJECTED
        assert escalation.decided_by is None
        assert escalation.decided_by_name == "ltpdash"
        assert escalation.note == branch["reason"]
        assert escalation.decision_frame.ltp_id == decision["id"]
        assert Frame.objects.filter(coordination__key=KEY, ltp_id=decision["id"]).count() == 1

    await check()
    await trace_verifies()


async def test_default_decision_reaches_an_agent_that_was_away_when_it_was_made(live, agents):
    async with metrics_client(live, agents) as metrics:
        escalated = await escalate(metrics)
    await deadline_passes()  # the agent is not connected: the decision waits in its outbox

    async with metrics_client(live, agents) as metrics:
        decision = await metrics.receive(type="route_response", where=about(escalated))
        assert decision["payload"]["branches"][0]["action"] == "reject"

    # The client acks on receipt; daphne applies the ack shortly after.
    await aeventually(
        lambda: not Delivery.objects.filter(agent=agents.metrics, acked_at=None).exists(),
        what="metrics-agent acknowledged the decision",
    )


async def test_undecided_escalation_moves_to_the_admins_with_the_reason(
    live, agents, operators, settings
):
    async with metrics_client(live, agents) as metrics:
        escalated = await escalate(metrics)
        escalation, swept = await deadline_passes("next_tier")
        assert f"{KEY}: escalation {escalation.pk} moved to tier 2 (admins)" in swept

        notice = await metrics.receive(type="route_response", where=about(escalated))
        (branch,) = notice["payload"]["branches"]
        assert branch == {
            "action": "escalate",
            "reason": f"no decision within {settings.ESCALATION_DEADLINE}s; "
            "moved to tier 2 (admins)",
            "tier": 2,
        }

        @sync_to_async
        def moved():
            escalation = Escalation.objects.get(coordination__key=KEY)
            assert escalation.status == EscalationStatus.PENDING
            assert escalation.tier == 2
            assert escalation.deadline > timezone.now()  # a fresh deadline for the admins
            step = Frame.objects.get(coordination__key=KEY, ltp_id=notice["id"])
            assert step.sender == "ltpdash"
            return escalation

        escalation = await moved()
        assert await sweep("next_tier") == ""  # moved once

        result = await sync_to_async(decide)(
            escalation.pk, operators["ada"], APPROVE, "page the DB on-call"
        )
        assert result.decided
        decision = await metrics.receive(type="route_response", where=about(escalated, "human:ada"))
        assert decision["payload"]["branches"][0]["action"] == "approve"
        assert decision["payload"]["branches"][0]["reason"] == "page the DB on-call"

    await trace_verifies()


async def test_second_tier_past_its_deadline_gets_the_reject_default(live, agents):
    async with metrics_client(live, agents) as metrics:
        escalated = await escalate(metrics)
        await deadline_passes("next_tier")
        _, swept = await deadline_passes("next_tier")
        assert "default applied: rejected" in swept
        decision = await metrics.receive(
            type="route_response",
            where=lambda f: (
                about(escalated)(f) and f["payload"]["branches"][0]["action"] == "reject"
            ),
        )
        assert decision["payload"]["branches"][0]["reason"].endswith("default applied: reject")

    @sync_to_async
    def check():
        escalation = Escalation.objects.get(coordination__key=KEY)
        assert escalation.status == EscalationStatus.REJECTED
        assert escalation.tier == 2

    await check()


async def test_deadline_follows_the_coordinations_own_setting(live, agents):
    await sync_to_async(Coordination.objects.create)(key=KEY, escalation_deadline_seconds=120)
    async with metrics_client(live, agents) as metrics:
        escalated = await escalate(metrics)

        @sync_to_async
        def waiting_time():
            escalation = Escalation.objects.get(coordination__key=KEY)
            return (escalation.deadline - escalation.created_at).total_seconds()

        assert round(await waiting_time()) == 120
        await deadline_passes()
        decision = await metrics.receive(type="route_response", where=about(escalated))
        assert decision["payload"]["branches"][0]["reason"] == (
            "no decision within 120s; default applied: reject"
        )
