"""The orientation in force is stored with every frame an agent sends: a reviewer sees, for
each step, the guardrails that applied when the agent took it."""

import pytest

from coordination.models import Frame
from tests import factories

pytestmark = pytest.mark.django_db

KEY = "incident-4821"
ORIENTATION = {
    "role": "triage-agent",
    "intent": "diagnose backlog",
    "guardrails": ["no production writes"],
}


def send(agent, data, key=KEY) -> list[Frame]:
    """factories.send in coordination `key` (a frame needs only its id, type and payload);
    the frames as stored."""
    if "type" in data:
        data = factories.frame(data["id"], data["type"], data["payload"], coordination_id=key)
    else:
        data = {"coordination_id": key, **data}
    outcomes = factories.send(agent, data)
    return [Frame.objects.get(sender=agent.name, ltp_id=o.frame_id) for o in outcomes]


def guardrails(frame: Frame) -> list[str] | None:
    return frame.orientation.payload["guardrails"] if frame.orientation else None


def test_frames_before_any_orientation_have_none_in_force(agents):
    (hello,) = send(agents.triage, {"id": "h1", "type": "hello", "payload": {}})
    assert hello.orientation is None


def test_orientation_frame_is_in_force_for_itself(agents):
    (orientation,) = send(
        agents.triage, {"id": "o1", "type": "orientation", "payload": ORIENTATION}
    )
    assert orientation.orientation == orientation
    assert guardrails(orientation) == ["no production writes"]


def test_every_frame_after_an_orientation_carries_it(agents):
    (orientation,) = send(
        agents.triage, {"id": "o1", "type": "orientation", "payload": ORIENTATION}
    )
    later = [
        *send(agents.triage, {"id": "r1", "type": "route_request", "payload": {"need": "x"}}),
        *send(agents.triage, {"id": "s1", "type": "focus_snapshot", "payload": {"state": "s"}}),
        *send(agents.triage, {"id": "u1", "type": "something_new", "payload": {}}),
        *send(
            agents.triage,
            {"id": "a1", "type": "route_response", "payload": {"branches": [{"action": "retry"}]}},
        ),
    ]
    assert [f.orientation for f in later] == [orientation] * 4


def test_seed_bundle_request_carries_the_orientation_declared_just_before_it(agents):
    orientation, request = send(
        agents.triage,
        {
            "id": "seed",
            "orientation": ORIENTATION,
            "route_request": {"target": "metrics-agent", "need": "queue depth and error rate"},
        },
    )
    assert request.type == "route_request"
    assert request.orientation == orientation
    assert guardrails(request) == ["no production writes"]


def test_a_new_orientation_applies_from_then_on_and_history_keeps_the_old_one(agents):
    (first,) = send(agents.triage, {"id": "o1", "type": "orientation", "payload": ORIENTATION})
    (before,) = send(agents.triage, {"id": "r1", "type": "route_request", "payload": {}})
    relaxed = {**ORIENTATION, "guardrails": ["no production writes", "read replicas only"]}
    (second,) = send(agents.triage, {"id": "o2", "type": "orientation", "payload": relaxed})
    (after,) = send(agents.triage, {"id": "r2", "type": "route_request", "payload": {}})

    before.refresh_from_db()
    assert before.orientation == first
    assert after.orientation == second
    assert guardrails(after) == ["no production writes", "read replicas only"]


def test_another_agents_orientation_is_not_in_force(agents):
    send(agents.triage, {"id": "o1", "type": "orientation", "payload": ORIENTATION})
    (answer,) = send(agents.metrics, {"id": "a1", "type": "route_response", "payload": {}})
    assert answer.orientation is None

    (own,) = send(
        agents.metrics,
        {"id": "o2", "type": "orientation", "payload": {"guardrails": ["cannot page DB"]}},
    )
    (answer,) = send(agents.metrics, {"id": "a2", "type": "route_response", "payload": {}})
    assert answer.orientation == own


def test_an_orientation_holds_only_in_its_own_coordination(agents):
    send(agents.triage, {"id": "o1", "type": "orientation", "payload": ORIENTATION})
    (elsewhere,) = send(
        agents.triage, {"id": "r1", "type": "route_request", "payload": {}}, key="incident-4822"
    )
    assert elsewhere.orientation is None


def test_timeline_shows_the_guardrails_in_force_with_each_action(agents, client_for):
    send(agents.triage, {"id": "o1", "orientation": ORIENTATION})
    send(agents.triage, {"id": "r1", "route_request": {"target": "human", "need": "page the DB"}})
    send(agents.triage, {"id": "o2", "orientation": {**ORIENTATION, "guardrails": ["read-only"]}})
    send(agents.triage, {"id": "r2", "route_request": {"target": "human", "need": "restart"}})
    client = client_for("vic")

    page = client.get(f"/coordinations/{KEY}/").content.decode()

    def row(frame_id: str) -> str:
        seq = Frame.objects.get(sender="triage-agent", ltp_id=frame_id).seq
        start = page.index(f'id="frame-{seq}"')
        return page[start : page.index("</li>", start)]

    assert "guardrails: no production writes" in row("r1:route_request")
    assert "guardrails: read-only" in row("r2:route_request")
    assert "guardrails:" not in row("r2:route_request").replace("guardrails: read-only", "")
