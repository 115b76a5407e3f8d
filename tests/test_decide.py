"""Deciding an escalation from the console: the form, the frame it becomes, the refusals."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from coordination.models import (
    HUMAN_PREFIX,
    Delivery,
    Escalation,
    EscalationStatus,
    Frame,
)
from tests.factories import seed, send
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def _decide(client: Client, escalation: Escalation, htmx: bool = True, **data):
    return client.post(
        reverse("escalation-decide", args=[escalation.pk]),
        data,
        headers={"HX-Request": "true"} if htmx else {},
    )


def test_route_response_escalate_branch_opens_an_escalation_with_its_context(agents, client_for):
    escalation = seed(agents)

    assert escalation.reason == "guardrail: cannot page DB"
    assert escalation.agent == agents.metrics
    assert escalation.frame.type == "route_response"
    assert escalation.coordination.key == KEY
    page = client_for("vic").get(reverse("escalation-inbox")).content.decode()
    assert "guardrail: cannot page DB" in page
    assert "queue depth and error rate" in page  # the request
    assert "1240" in page and "0.07" in page  # the result it carried
    assert "no production writes" in page  # the requester's guardrails at the time


def test_route_request_to_human_opens_an_escalation(agents, client_for):
    send(
        agents.triage,
        {
            "id": "ask-human",
            "coordination_id": KEY,
            "orientation": {"role": "triage", "intent": "restart", "guardrails": ["ask first"]},
            "route_request": {"target": "human", "need": "may I restart the worker pool?"},
        },
    )

    escalation = Escalation.objects.get()
    assert escalation.agent == agents.triage
    assert escalation.reason == "may I restart the worker pool?"
    assert escalation.route_request.ltp_id == "ask-human:route_request"
    assert escalation.in_reply_to == "ask-human:route_request"
    page = client_for("alice").get(reverse("coordination-detail", args=[KEY]))
    assert "may I restart the worker pool?" in page.content.decode()
    assert "ask first" in page.content.decode()  # the orientation in force when it asked


def test_approval_becomes_a_human_route_response_in_the_chain_owed_to_the_agent(
    agents, client_for, operators
):
    escalation = seed(agents)

    response = _decide(
        client_for("alice"),
        escalation,
        verdict="approve",
        note="page the DB on-call",
        instructions="use the read replica",
    )

    assert response.status_code == 200
    assert "Approved by alice" in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.APPROVED
    assert escalation.decided_by == operators["alice"]
    frame = escalation.decision_frame
    assert frame.sender == HUMAN_PREFIX + "alice"
    assert frame.type == "route_response" and frame.direction == "out"
    assert frame.payload["in_reply_to"] == escalation.in_reply_to
    assert frame.payload["branches"] == [
        {"action": "approve", "reason": "page the DB on-call", "decided_by": "alice"}
    ]
    assert frame.payload["instructions"] == "use the read replica"
    assert frame.seq == escalation.coordination.frames.order_by("-seq").first().seq
    delivery = Delivery.objects.get(frame=frame, agent=agents.metrics)
    assert delivery.acked_at is None  # stored, owed until the agent acks it


def test_second_decision_on_same_escalation_is_refused_with_who_decided(
    agents, client_for, operators
):
    escalation = seed(agents)
    _decide(client_for("alice"), escalation, verdict="approve", note="go")
    frames = Frame.objects.count()

    response = _decide(client_for("bob"), escalation, verdict="reject", note="no")

    body = response.content.decode()
    assert "alice approved this at" in body and "your rejection was not sent." in body
    assert ">no</textarea>" in body  # bob's note is kept for him, not sent
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.APPROVED
    assert escalation.decided_by == operators["alice"] and escalation.note == "go"
    assert Frame.objects.count() == frames


def test_rejecting_without_a_note_is_refused_and_decides_nothing(agents, client_for):
    escalation = seed(agents)

    response = _decide(client_for("alice"), escalation, verdict="reject", note="  ")

    assert "Say why you reject" in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING


def test_a_form_post_without_javascript_redirects_back_with_the_outcome(agents, client_for):
    escalation = seed(agents)
    client = client_for("alice")

    response = _decide(
        client, escalation, htmx=False, verdict="reject", note="not now", next="/escalations/"
    )

    assert response.status_code == 302 and response["Location"] == "/escalations/"
    page = client.get("/escalations/").content.decode()
    assert "Rejected." in page  # the message, shown once after the redirect
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.REJECTED
    assert escalation.decision_frame.payload["branches"][0]["action"] == "reject"


def test_a_redirect_never_leaves_the_site(agents, client_for):
    escalation = seed(agents)

    response = _decide(
        client_for("alice"),
        escalation,
        htmx=False,
        verdict="approve",
        next="https://evil.example/",
    )

    assert response["Location"] == reverse("coordination-detail", args=[KEY])


@override_settings(CRITICAL_APPROVALS=2)
def test_a_critical_escalation_needs_two_approvers_and_shows_the_count(agents, client_for):
    send(
        agents.triage,
        {
            "id": "wipe",
            "coordination_id": KEY,
            "route_request": {"target": "metrics-agent", "action": "delete_data"},
        },
    )
    escalation = Escalation.objects.get()
    assert escalation.required_approvals == 2

    first = _decide(client_for("alice"), escalation, verdict="approve", note="ok")

    assert "1 of 2 approvals" in first.content.decode()
    assert "alice" in first.content.decode()
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING

    second = _decide(client_for("bob"), escalation, verdict="approve", note="ok too")

    assert "Approved by bob" in second.content.decode()
    escalation.refresh_from_db()
    assert escalation.decision_frame.payload["branches"][0]["approvers"] == ["alice", "bob"]
