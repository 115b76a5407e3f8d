"""Issue 11 without a browser: a human note in the chain, presence churn folded, timeline and
list filters, who is on a card, the favicon."""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from coordination import attention, decisions, listing, outbox, timeline
from coordination.models import Agent, Attention, Coordination, Frame, Presence
from coordination.present import TimelineRow
from coordination.trace import verify_trace
from tests.factories import coordination, seed
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def test_a_human_note_is_a_chain_frame_from_the_human_owed_to_no_agent(agents, operators):
    seed(agents)
    frame = decisions.note(coordination().pk, operators["alice"], "DBA paged by phone")
    assert frame.sender == "human:alice" and frame.type == "note"
    assert frame.payload["text"] == "DBA paged by phone"
    assert not frame.deliveries.exists()
    assert verify_trace(coordination().trace_lines()).ok


def test_the_note_form_adds_the_note_and_a_viewer_cannot(agents, operators):
    seed(agents)
    client = Client()
    client.force_login(operators["alice"])
    response = client.post(reverse("coordination-note", args=[KEY]), {"text": "on the phone"})
    assert response.status_code == 302
    assert Frame.objects.filter(sender="human:alice", type="note").count() == 1
    client.force_login(operators["vic"])
    response = client.post(reverse("coordination-note", args=[KEY]), {"text": "me too"})
    assert response.status_code == 403


def test_adjacent_presence_rows_fold_into_one_line_per_agent(agents, operators):
    seed(agents)
    c = coordination()
    for previous, now in [("online", "offline"), ("offline", "online")]:
        for agent in (agents.metrics, agents.triage):
            outbox.emit(
                c,
                "presence",
                {"agent": agent.name, "previous": previous, "presence": now},
            )
    page = timeline.page(c.pk, None, timeline.Filter())
    folds = [e for e in page.entries if isinstance(e, timeline.Fold)]
    assert len(folds) == 1
    assert folds[0].lines == [
        "metrics-agent: online → offline → online (2 changes)",
        "triage-agent: online → offline → online (2 changes)",
    ]
    assert not any(isinstance(e, TimelineRow) and e.frame.type == "presence" for e in page.entries)


def test_the_timeline_filter_keeps_one_sender_or_one_type(agents, operators):
    seed(agents)
    c = coordination()
    only = timeline.Filter.from_query({"sender": "metrics-agent"})
    rows = timeline.page(c.pk, None, only).entries
    assert rows and {r.frame.sender for r in rows} == {"metrics-agent"}
    only = timeline.Filter.from_query({"type": "orientation"})
    assert {r.frame.type for r in timeline.page(c.pk, None, only).entries} == {"orientation"}
    assert only.query == "type=orientation"


def test_the_agents_snapshot_is_not_the_take_over_frame(agents, operators):
    seed(agents)
    c = coordination()
    decisions.handoff(c.pk, operators["alice"], operators["alice"])
    snapshot = timeline.agents_snapshot(Coordination.objects.get(pk=c.pk))
    assert snapshot is not None and snapshot.sender == "metrics-agent"


def test_the_list_filters_searches_and_shows_deadlines_and_silent_agents(agents, operators):
    seed(agents)
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.SILENT)
    alice, vic = operators["alice"], operators["vic"]
    rows = listing.list_context(listing.ListQuery.from_query({"show": "mine"}), alice)["rows"]
    assert [r.row.coordination.key for r in rows] == [KEY]
    assert rows[0].nearest is not None and rows[0].silent == ["metrics-agent"]
    assert listing.list_context(listing.ListQuery.from_query({"show": "mine"}), vic)["rows"] == []
    assert listing.list_context(listing.ListQuery(q="nothing-like-it"), alice)["rows"] == []
    assert len(listing.list_context(listing.ListQuery(q="4821"), alice)["rows"]) == 1
    assert listing.list_context(listing.ListQuery(show="resolved"), alice)["rows"] == []
    client = Client()
    client.force_login(alice)
    page = client.get(reverse("coordination-list") + "?show=open&sort=deadline&q=incident")
    assert page.status_code == 200 and b'class="countdown"' in page.content


def test_who_looks_and_who_is_on_it_expire(agents, operators):
    escalation = seed(agents)
    alice, bob = operators["alice"], operators["bob"]
    attention.looking(alice, [escalation.pk])
    attention.on_it(escalation, bob)
    people = attention.people([escalation.pk])[escalation.pk]
    assert people.looking == ["alice"] and people.on_it == ["bob"]
    assert attention.seen_by(people, alice).looking == []
    Attention.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert attention.people([escalation.pk])[escalation.pk] == attention.People()


@pytest.mark.django_db(transaction=True)
def test_favicon_ico_does_not_404(live):
    with urllib.request.urlopen(live.http + "/favicon.ico", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("image/svg")


def test_a_decision_row_shows_its_instructions(agents, operators):
    escalation = seed(agents)
    decisions.decide(
        escalation.pk, operators["alice"], "approve", "go", instructions="read-only replica"
    )
    escalation.refresh_from_db()
    row = TimelineRow(escalation.decision_frame)
    assert "approve: go by alice" in row.summary
    assert "instructions: read-only replica" in row.summary


def test_the_guardrail_mark_is_drawn_not_a_glyph_fonts_may_lack():
    css = (Path(__file__).resolve().parent.parent / "static/ltpdash/console.css").read_text()
    assert "⛨" not in css
