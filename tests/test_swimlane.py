"""The swimlane picture: server-rendered SVG, one lane per participant, marks linking to their
steps, time compressed where nothing happens; readable for a 200-step incident."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.test import Client
from django.urls import reverse

from coordination import review, swimlane
from coordination.decisions import APPROVE, decide
from coordination.models import Agent, Presence
from tests.factories import coordination, seed, send
from tests.seed import KEY

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"
HOUR_MS = 3600 * 1000


def two_hundred_steps(agents, operators) -> None:
    """An incident of 200+ steps: a chatty exchange, two idle hours, an escalation decided."""
    Agent.objects.update(presence=Presence.ONLINE)  # so requests are routed, not escalated
    start = 1_764_000_000_000
    for n in range(98):
        ts = start + n * 1000 + (2 * HOUR_MS if n >= 50 else 0)
        sender, target = (
            (agents.triage, "metrics-agent") if n % 2 else (agents.metrics, "triage-agent")
        )
        send(
            sender,
            {
                "v": "0.1",
                "id": f"q{n}",
                "ts": ts,
                "type": "route_request",
                "coordination_id": KEY,
                "payload": {"target": target, "need": f"check {n}"},
            },
        )
        send(
            sender,
            {
                "v": "0.1",
                "id": f"a{n}",
                "ts": ts + 500,
                "type": "focus_snapshot",
                "payload": {"coordination_id": KEY, "state": f"step {n}"},
            },
        )
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "go ahead")


def test_svg_for_a_200_step_coordination_has_one_lane_per_participant(agents, operators):
    two_hundred_steps(agents, operators)
    story = review.story(coordination())
    assert len(story.steps) >= 200
    svg = ET.fromstring(swimlane.render(story.lanes, story.steps))  # well-formed XML

    lanes = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-weight") == "600"]
    # ltpdash first, the agents in order of appearance, humans last.
    assert lanes == ["ltpdash", "metrics-agent", "triage-agent", "humans"]
    marks = [a for a in svg.iter(f"{SVG}a") if "mark" in a.get("class", "")]
    assert [a.get("href") for a in marks] == [f"#step-{s.seq}" for s in story.steps]

    # Time is compressed: two idle hours are one labelled break, not two hours of drawing.
    pauses = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-style") == "italic"]
    assert "2 h 0 min idle" in pauses
    assert int(svg.get("height")) < len(story.steps) * swimlane.ROW + 10 * swimlane.GAP + 200


def test_marks_carry_arrows_between_lanes_for_requests_escalations_and_decisions(agents, operators):
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "go ahead")
    story = review.story(coordination())
    layout = swimlane.layout(story.lanes, story.steps)
    x = {lane["name"]: lane["x"] for lane in layout["lanes"]}
    by_seq = {mark.seq: mark for mark in layout["marks"]}
    kinds = {step.seq: step.kind for step in story.steps}

    request = next(s for s in story.steps if s.kind == "request")
    assert (by_seq[request.seq].x, by_seq[request.seq].to_x) == (
        x["triage-agent"],
        x["metrics-agent"],
    )
    escalated = escalation.frame.seq
    assert kinds[escalated] == "escalation"
    assert (by_seq[escalated].x, by_seq[escalated].to_x) == (x["metrics-agent"], x["humans"])
    decision = escalation.__class__.objects.get().decision_frame.seq
    assert kinds[decision] == "decision"
    assert (by_seq[decision].x, by_seq[decision].to_x) == (x["humans"], x["metrics-agent"])


def test_review_page_inlines_the_picture_without_script(agents, operators):
    seed(agents)
    client = Client()
    client.force_login(operators["vic"])
    body = client.get(reverse("coordination-review", args=[KEY])).content.decode()
    svg = re.search(r"<svg .*?</svg>", body, re.S).group(0)
    assert "<script" not in svg and " on" not in re.sub(r"<title.*?</title>", "", svg)
    ET.fromstring(svg)
