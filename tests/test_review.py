"""The review page: every step as sentences with its sender, reasons and the orientation in
force; orientation changes marked where they happen; filters in the URL."""

from __future__ import annotations

import html as htmllib

import pytest
from django.test import Client
from django.urls import reverse

from coordination import review
from coordination.decisions import APPROVE, decide
from tests.factories import coordination, seed, send
from tests.review_helpers import mark_seqs, step_block, step_seqs
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def page(user, query: str = "") -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("coordination-review", args=[KEY]) + query)
    assert response.status_code == 200
    return htmllib.unescape(response.content.decode())


@pytest.fixture
def decided(agents, operators):
    escalation = seed(agents)
    assert decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call")
    return escalation


def test_coordination_page_links_to_its_review(decided, operators):
    client = Client()
    client.force_login(operators["vic"])
    body = client.get(reverse("coordination-detail", args=[KEY])).content.decode()
    assert f'href="/coordinations/{KEY}/review/">Review</a>' in body


def test_escalation_step_shows_its_reason_beside_the_senders_guardrails_in_force(agents, operators):
    send(
        agents.metrics,
        {
            "orientation": {
                "role": "metrics-agent",
                "intent": "report queue metrics",
                "guardrails": ["read-only", "cannot page DB"],
                "coordination_id": KEY,
            }
        },
    )
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call")
    body = page(operators["vic"])

    step = step_block(body, escalation.frame.seq)
    assert "metrics-agent escalated to humans." in step
    assert "guardrail: cannot page DB" in step
    assert "under the guardrails “read-only”; “cannot page DB”" in step
    assert "with the intent “report queue metrics”" in step

    decision = step_block(body, escalation.__class__.objects.get().decision_frame.seq)
    assert "alice approved the escalation." in decision
    assert "Note: page the DB on-call" in decision
    assert "human:alice" in decision


def test_orientation_change_steps_before_show_old_and_after_show_new(agents, operators):
    send(
        agents.triage,
        {
            "id": "o1",
            "coordination_id": KEY,
            "orientation": {
                "role": "triage-agent",
                "intent": "diagnose backlog",
                "guardrails": ["no production writes"],
            },
        },
    )
    send(
        agents.triage,
        {
            "id": "r1",
            "coordination_id": KEY,
            "route_request": {"target": "metrics-agent", "need": "queue depth"},
        },
    )
    send(
        agents.triage,
        {
            "id": "o2",
            "coordination_id": KEY,
            "orientation": {
                "role": "triage-agent",
                "intent": "drain the queue",
                "guardrails": ["writes to the queue only"],
            },
        },
    )
    send(
        agents.triage,
        {
            "id": "r2",
            "coordination_id": KEY,
            "route_request": {"target": "metrics-agent", "need": "error rate"},
        },
    )
    steps = {s.frame_id: s for s in review.story(coordination()).steps}
    before, change, after = (
        steps["r1:route_request"],
        steps["o2:orientation"],
        steps["r2:route_request"],
    )
    assert before.orientation.intent == "diagnose backlog"
    assert before.orientation.guardrails == ("no production writes",)
    assert after.orientation.intent == "drain the queue"
    assert after.orientation.guardrails == ("writes to the queue only",)
    assert change.orientation_changed and not steps["o1:orientation"].orientation_changed

    body = page(operators["vic"])
    assert "with the intent “diagnose backlog” under the guardrail “no production writes”" in (
        step_block(body, before.seq)
    )
    marked = step_block(body, change.seq)
    assert "Orientation changed here." in marked
    assert "intent from “diagnose backlog” to “drain the queue”" in marked
    assert "guardrails from “no production writes” to “writes to the queue only”" in marked
    assert "with the intent “drain the queue” under the guardrail “writes to the queue only”" in (
        step_block(body, after.seq)
    )


def test_every_step_is_shown_with_raw_json_one_click_away(decided, operators):
    body = page(operators["vic"])
    count = coordination().frames.count()
    assert step_seqs(body) == list(range(count))
    assert body.count("<summary>Raw JSON</summary>") == count
    assert '"reason": "guardrail: cannot page DB"' in body
    assert mark_seqs(body) == list(range(count))


def test_filters_in_the_url_narrow_the_story_and_the_picture(decided, operators):
    everything = step_seqs(page(operators["vic"]))

    only = page(operators["vic"], "?only=decisions")
    kinds = [s.kind for s in review.story(coordination()).steps if s.seq in step_seqs(only)]
    assert set(kinds) == {"escalation", "decision"} and len(step_seqs(only)) < len(everything)
    assert mark_seqs(only) == step_seqs(only)
    assert 'name="only" value="decisions" checked' in only  # the form keeps it

    by_agent = page(operators["vic"], "?agent=triage-agent")
    assert step_seqs(by_agent) and all(
        '<strong class="sender">triage-agent</strong>' in step_block(by_agent, seq)
        for seq in step_seqs(by_agent)
    )
    assert '<option value="triage-agent" selected>' in by_agent

    by_type = page(operators["vic"], "?type=focus_snapshot")
    assert [s.type for s in review.story(coordination()).steps if s.seq in step_seqs(by_type)] == [
        "focus_snapshot"
    ]

    searched = page(operators["vic"], "?q=CANNOT+page")
    assert len(step_seqs(searched)) == 1
    assert "guardrail: cannot page DB" in step_block(searched, step_seqs(searched)[0])
    assert 'value="CANNOT page"' in searched

    assert step_seqs(page(operators["vic"], "?q=no-such-text")) == []


@pytest.mark.parametrize(
    ("user", "status"), [("vic", 200), ("alice", 200), ("ada", 200), ("oscar", 403)]
)
def test_review_page_and_report_need_the_watch_permission(decided, operators, user, status):
    client = Client()
    client.force_login(operators[user])
    assert client.get(reverse("coordination-review", args=[KEY])).status_code == status
    assert client.get(reverse("coordination-review-report", args=[KEY])).status_code == status


def test_anonymous_visitors_are_sent_to_log_in(decided):
    response = Client().get(reverse("coordination-review", args=[KEY]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_agent_text_is_escaped_in_the_story_and_the_picture(agents, operators):
    send(
        agents.triage,
        {
            "id": "x1",
            "coordination_id": KEY,
            "orientation": {
                "role": "<script>alert(1)</script>",
                "intent": "</svg><img src=x>",
                "guardrails": ["\"&'"],
            },
        },
    )
    send(
        agents.triage,
        {
            "id": "x2",
            "coordination_id": KEY,
            "route_request": {"target": "<b>evil</b>", "need": "<i>x</i>"},
        },
    )
    client = Client()
    client.force_login(operators["vic"])
    body = client.get(reverse("coordination-review", args=[KEY])).content.decode()
    for raw in ("<script>alert", "</svg><img", "<b>evil</b>", "<i>x</i>"):
        assert raw not in body
    assert "&lt;b&gt;evil&lt;/b&gt;" in body


@pytest.mark.parametrize(("user", "status"), [("vic", 302), ("ada", 302), ("oscar", 403)])
def test_reverify_needs_the_watch_permission_and_only_refreshes_the_verdict(
    decided, operators, user, status
):
    client = Client()
    client.force_login(operators[user])
    head = coordination().head_seq
    response = client.post(reverse("coordination-reverify", args=[KEY]))
    assert response.status_code == status
    assert coordination().head_seq == head
    assert client.get(reverse("coordination-reverify", args=[KEY])).status_code in (403, 405)
    anonymous = Client().post(reverse("coordination-reverify", args=[KEY]))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
