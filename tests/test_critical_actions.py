"""Critical actions (PROTOCOL §5) are never routed on an agent's word: they become an
escalation carrying the LTP rule id, and with CRITICAL_APPROVALS=2 need two different
approvers."""

import pytest
from django.test import override_settings

from coordination.decisions import APPROVE, REJECT, decide
from coordination.models import (
    Agent,
    Delivery,
    Escalation,
    EscalationStatus,
    Frame,
    RequestStatus,
)
from tests import factories
from tests.factories import ask, send
from tests.seed import KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def online(agents):
    # The target is reachable: whatever stops the request, it is not presence.
    factories.online(agents.metrics.name)
    return agents


def test_critical_action_request_becomes_an_escalation_with_the_rule_id(online):
    request = ask(
        online.triage,
        {"target": "metrics-agent", "need": "restart the queue", "action": "modify_system"},
    )

    assert request.status == RequestStatus.ESCALATED
    escalation = Escalation.objects.get(route_request=request)
    assert escalation.status == EscalationStatus.PENDING
    assert escalation.rule_id == "AGENTS.CRIT.NO_CAPABILITY"
    assert escalation.action == "modify_system"
    assert escalation.agent == online.triage
    assert escalation.in_reply_to == "req-1"
    # The step is in the chain, with the rule id, and the requester is told.
    step = escalation.frame
    assert step.sender == "ltpdash"
    (branch,) = step.payload["branches"]
    assert branch["action"] == "escalate"
    assert branch["rule_id"] == "AGENTS.CRIT.NO_CAPABILITY"
    assert "modify_system" in branch["reason"]
    assert Delivery.objects.filter(agent=online.triage, frame=step).exists()


def test_critical_action_request_is_never_forwarded_to_its_target(online):
    request = ask(online.triage, {"target": "metrics-agent", "action": "delete_data"})

    assert request.assigned_to is None
    assert request.tried == []
    assert not Delivery.objects.filter(agent=online.metrics).exists()


def test_critical_action_named_by_target_state_is_caught_too(online):
    request = ask(online.triage, {"target": "metrics-agent", "targetState": "transfer_money"})

    assert Escalation.objects.get(route_request=request).action == "transfer_money"
    assert not Delivery.objects.filter(agent=online.metrics).exists()


def test_agent_with_the_capability_still_needs_a_human(online):
    Agent.objects.filter(pk=online.triage.pk).update(capabilities=["CAPABILITY_MODIFY_SYSTEM"])
    online.triage.refresh_from_db()

    request = ask(online.triage, {"target": "metrics-agent", "action": "modify_system"})

    assert Escalation.objects.get(route_request=request).rule_id == "AGENTS.CRIT.NO_ADMISSIBILITY"
    assert not Delivery.objects.filter(agent=online.metrics).exists()


@override_settings(EXTRA_CRITICAL_ACTIONS=["restart_service"])
def test_critical_action_list_is_extensible_by_setting(online):
    request = ask(online.triage, {"target": "metrics-agent", "action": "restart_service"})
    assert request.status == RequestStatus.ESCALATED

    ordinary = ask(online.triage, {"target": "metrics-agent", "action": "read_metrics"}, "req-2")
    assert ordinary.status == RequestStatus.OPEN
    assert ordinary.assigned_to == online.metrics


def test_branch_naming_a_critical_action_opens_an_escalation_with_the_rule_id(online):
    request = ask(online.triage, {"target": "metrics-agent", "need": "queue depth"})
    assert request.assigned_to == online.metrics

    send(
        online.metrics,
        {
            "v": "0.1",
            "id": "resp-1",
            "ts": 1764000000001,
            "type": "route_response",
            "payload": {
                "in_reply_to": "req-1",
                "result": {"queue_depth": 1240},
                "branches": [
                    {"action": "retry", "reason": "queue drains"},
                    {"action": "execute_code", "reason": "flush the queue by script"},
                ],
            },
        },
    )

    escalation = Escalation.objects.get(coordination__key=KEY)
    assert escalation.rule_id == "AGENTS.CRIT.NO_CAPABILITY"
    assert escalation.action == "execute_code"
    assert escalation.agent == online.metrics
    assert escalation.branch_index == 1


@override_settings(CRITICAL_APPROVALS=2)
def test_critical_escalation_needs_two_different_approvers(online, operators):
    request = ask(online.triage, {"target": "metrics-agent", "action": "modify_system"})
    escalation = Escalation.objects.get(route_request=request)
    assert escalation.required_approvals == 2

    first = decide(escalation.pk, operators["alice"], APPROVE, "looks right")
    assert not first.decided
    assert first.message.startswith("1 of 2 approvals")
    assert Escalation.objects.get(pk=escalation.pk).status == EscalationStatus.PENDING
    assert not Frame.objects.filter(sender__startswith="human:").exists()

    second = decide(escalation.pk, operators["bob"], APPROVE, "agreed")
    assert second.decided
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.APPROVED
    (branch,) = escalation.decision_frame.payload["branches"]
    assert branch["action"] == "approve"
    assert branch["approvers"] == ["alice", "bob"]
    assert Delivery.objects.filter(agent=online.triage, frame=escalation.decision_frame).exists()


@override_settings(CRITICAL_APPROVALS=2)
def test_the_same_approver_twice_does_not_count_twice(online, operators):
    request = ask(online.triage, {"target": "metrics-agent", "action": "modify_system"})
    escalation = Escalation.objects.get(route_request=request)

    decide(escalation.pk, operators["alice"], APPROVE, "yes")
    again = decide(escalation.pk, operators["alice"], APPROVE, "yes, really")

    assert not again.decided
    assert again.message.startswith("1 of 2 approvals")
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING
    assert escalation.approvals.count() == 1


@override_settings(CRITICAL_APPROVALS=2)
def test_one_rejection_is_enough_to_stop_a_critical_action(online, operators):
    request = ask(online.triage, {"target": "metrics-agent", "action": "modify_system"})
    escalation = Escalation.objects.get(route_request=request)

    result = decide(escalation.pk, operators["alice"], REJECT, "not during the incident")

    assert result.decided
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.REJECTED
    assert not Delivery.objects.filter(agent=online.metrics).exists()


@override_settings(CRITICAL_APPROVALS=2)
def test_ordinary_escalation_needs_one_approver_whatever_the_setting(online, operators):
    request = ask(online.triage, {"target": "human", "need": "may I page the DB on-call?"})
    escalation = Escalation.objects.get(route_request=request)
    assert escalation.rule_id == ""
    assert escalation.required_approvals == 1

    assert decide(escalation.pk, operators["alice"], APPROVE, "go").decided
