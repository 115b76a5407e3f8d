"""Say what approval does, and edit before approve (issue #11): the proposal an agent states
is stored and shown on the card; an approver's amended arguments travel in the decision
frame beside the original, and the timeline shows the difference."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from coordination.models import Agent, Escalation, EscalationStatus, Presence
from tests.factories import send
from tests.seed import KEY, SEED_RESPONSE
from tests.seed import SEED_REQUEST_WITH_ID as SEED_REQUEST

pytestmark = pytest.mark.django_db

PROPOSAL = {"action": "page_db_oncall", "args": {"service": "orders-db"}}


def _as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _decide(client: Client, escalation: Escalation, **data):
    return client.post(
        reverse("escalation-decide", args=[escalation.pk]), data, headers={"HX-Request": "true"}
    )


def _escalate_with(agents, branch: dict) -> Escalation:
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.ONLINE)
    send(agents.triage, SEED_REQUEST)
    response = {**SEED_RESPONSE["route_response"], "branches": [branch]}
    send(agents.metrics, {"id": "seed-2", "coordination_id": KEY, "route_response": response})
    return Escalation.objects.get(coordination__key=KEY)


def _gate_request(agents, args: dict) -> Escalation:
    send(
        agents.triage,
        {
            "id": "call-1",
            "coordination_id": KEY,
            "route_request": {
                "target": "human",
                "need": "refund duplicated charge",
                "action": "transfer_money",
                "args": args,
            },
        },
    )
    return Escalation.objects.get(coordination__key=KEY)


def test_an_escalating_branch_proposal_is_stored_and_shown_as_what_approval_does(agents, operators):
    escalation = _escalate_with(
        agents, {"action": "escalate", "reason": "guardrail: cannot page DB", "proposal": PROPOSAL}
    )

    assert escalation.proposed_action == "page_db_oncall"
    assert escalation.proposed_args == {"service": "orders-db"}
    page = _as(operators["vic"]).get(reverse("escalation-inbox")).content.decode()
    assert (
        "If you approve: <strong>metrics-agent</strong> will <code>page_db_oncall</code> "
        "(service: orders-db)" in page
    )


def test_without_a_proposal_the_card_says_the_agent_did_not_say(agents, operators):
    escalation = _escalate_with(agents, {"action": "escalate", "reason": "guardrail"})

    assert escalation.proposed_action == "" and escalation.proposed_args is None
    page = _as(operators["vic"]).get(reverse("escalation-inbox")).content.decode()
    assert "metrics-agent did not say what it will do if approved." in page


def test_a_proposal_from_a_hostile_agent_is_escaped(agents, operators):
    _escalate_with(
        agents,
        {
            "action": "escalate",
            "reason": "x",
            "proposal": {"action": "<script>a</script>", "args": {"<b>k": "<img src=x>"}},
        },
    )
    page = _as(operators["vic"]).get(reverse("escalation-inbox")).content.decode()
    assert "<script>a</script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;a&lt;/script&gt;" in page


def test_a_request_with_action_and_args_escalates_with_them_as_the_proposal(agents, operators):
    escalation = _gate_request(agents, {"account": "acme", "amount_eur": 5000})

    assert escalation.proposed_action == "transfer_money"
    assert escalation.proposed_args == {"account": "acme", "amount_eur": 5000}
    page = _as(operators["alice"]).get(reverse("escalation-inbox")).content.decode()
    assert "will <code>transfer_money</code> (account: acme, amount_eur: 5000)" in page
    assert 'name="amended_args"' in page


def test_approving_with_amended_args_puts_both_versions_in_the_decision_frame(agents, operators):
    escalation = _gate_request(agents, {"account": "acme", "amount_eur": 5000})

    response = _decide(
        _as(operators["alice"]),
        escalation,
        verdict="approve",
        note="only the duplicated part",
        amended_args=json.dumps({"account": "acme", "amount_eur": 4000}),
    )

    assert "Approved by alice" in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.amended_args == {"account": "acme", "amount_eur": 4000}
    branch = escalation.decision_frame.payload["branches"][0]
    assert branch["args"] == {"account": "acme", "amount_eur": 5000}
    assert branch["amended_args"] == {"account": "acme", "amount_eur": 4000}
    page = _as(operators["vic"]).get(reverse("coordination-detail", args=[KEY])).content.decode()
    assert "amended: amount_eur: 5000 → 4000" in page


def test_approving_with_the_args_unchanged_amends_nothing(agents, operators):
    escalation = _gate_request(agents, {"account": "acme", "amount_eur": 5000})

    _decide(
        _as(operators["alice"]),
        escalation,
        verdict="approve",
        amended_args='{"amount_eur": 5000, "account": "acme"}',
    )

    escalation.refresh_from_db()
    branch = escalation.decision_frame.payload["branches"][0]
    assert branch["args"] == {"account": "acme", "amount_eur": 5000}
    assert "amended_args" not in branch and escalation.amended_args is None


@pytest.mark.parametrize(
    ("text", "error"),
    [("{amount_eur: 4000}", "not valid JSON"), ("[4000]", "must be a JSON object")],
)
def test_amended_args_that_are_not_a_json_object_are_refused_clearly(
    agents, operators, text, error
):
    escalation = _gate_request(agents, {"amount_eur": 5000})

    response = _decide(_as(operators["alice"]), escalation, verdict="approve", amended_args=text)

    page = response.content.decode()
    assert error in page and 'aria-invalid="true"' in page
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING


def test_a_rejection_ignores_the_arguments(agents, operators):
    escalation = _gate_request(agents, {"amount_eur": 5000})

    _decide(_as(operators["alice"]), escalation, verdict="reject", note="no", amended_args="[")

    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.REJECTED
    assert "args" not in escalation.decision_frame.payload["branches"][0]
