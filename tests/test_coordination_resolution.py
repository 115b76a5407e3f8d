"""Which coordination a frame belongs to (PROTOCOL §3), and how ts is kept (PROTOCOL §1)."""

from datetime import UTC, datetime

import pytest

from coordination.models import Agent, Coordination, Frame
from tests import factories

pytestmark = pytest.mark.django_db


def send(agent, frame_id, type, payload=None, **extra):
    """Ingest one frame from `agent` the way either transport does, naming no coordination
    unless `extra` does; return its outcome."""
    data = factories.frame(frame_id, type, payload, **{"coordination_id": None, **extra})
    [outcome] = factories.send(Agent.objects.get(pk=agent.pk), data)
    return outcome


def coordination_of(sender, frame_id):
    stored = Frame.objects.select_related("coordination").get(sender=sender, ltp_id=frame_id)
    return stored.coordination.key if stored.coordination else None


def test_top_level_coordination_id_wins(agents):
    send(
        agents.triage,
        "s-1",
        "focus_snapshot",
        {"coordination_id": "from-payload"},
        coordination_id="top-level",
    )

    assert coordination_of("triage-agent", "s-1") == "top-level"
    assert not Coordination.objects.filter(key="from-payload").exists()


def test_payload_coordination_id_comes_next(agents):
    send(agents.triage, "o-1", "orientation", {"intent": "x"}, coordination_id="declared")

    send(agents.triage, "s-1", "focus_snapshot", {"coordination_id": "from-payload"})

    assert coordination_of("triage-agent", "s-1") == "from-payload"


def test_answer_belongs_to_the_coordination_of_the_request_it_answers(agents):
    factories.online(agents.metrics.name, connections=0)
    send(
        agents.triage,
        "rr-1",
        "route_request",
        {"target": "metrics-agent", "need": "queue depth"},
        coordination_id="incident-a",
    )
    # The answering agent has declared a different coordination of its own.
    send(agents.metrics, "o-m", "orientation", {"intent": "watch"}, coordination_id="incident-b")

    send(agents.metrics, "resp-1", "route_response", {"in_reply_to": "rr-1", "result": {"d": 1}})

    assert coordination_of("metrics-agent", "resp-1") == "incident-a"


def test_otherwise_the_coordination_the_agent_last_declared(agents):
    send(agents.triage, "o-1", "orientation", {"intent": "x"}, coordination_id="first")
    send(agents.triage, "h-1", "hello", {"coordination_id": "second"})

    send(agents.triage, "s-1", "focus_snapshot", {"state": "working"})

    assert coordination_of("triage-agent", "s-1") == "second"


def test_frames_that_declare_nothing_do_not_change_the_declared_coordination(agents):
    send(agents.triage, "o-1", "orientation", {"intent": "x"}, coordination_id="first")
    send(agents.triage, "s-1", "focus_snapshot", {"coordination_id": "elsewhere"})

    send(agents.triage, "s-2", "focus_snapshot", {"state": "still here"})

    assert coordination_of("triage-agent", "s-2") == "first"


def test_a_bare_hello_belongs_to_no_coordination(agents):
    outcome = send(agents.triage, "h-1", "hello", {"role": "triage-agent"})

    stored = Frame.objects.get(ltp_id="h-1")
    assert stored.coordination is None
    assert (stored.seq, stored.hash) == (None, "")
    assert (outcome.seq, outcome.hash) == (None, None)
    assert not Coordination.objects.exists()
    assert Agent.objects.get(pk=agents.triage.pk).role == "triage-agent"


def test_a_heartbeat_is_presence_only(agents):
    send(agents.triage, "o-1", "orientation", {"intent": "x"}, coordination_id="incident-a")

    outcome = send(agents.triage, "hb-1", "heartbeat", {"seq": 1})

    assert outcome.duplicate is False
    assert not Frame.objects.filter(ltp_id="hb-1").exists()
    assert Agent.objects.get(pk=agents.triage.pk).heartbeat_deadline is not None


def test_first_frame_creates_the_coordination(agents):
    assert not Coordination.objects.exists()

    send(agents.triage, "s-1", "focus_snapshot", {"state": "new"}, coordination_id="incident-new")

    coordination = Coordination.objects.get(key="incident-new")
    assert (coordination.head_seq, coordination.state) == (0, "new")


def test_ts_earlier_than_the_senders_previous_is_kept_and_flagged(agents):
    first = send(agents.triage, "s-1", "focus_snapshot", {}, coordination_id="c", ts=2000)
    earlier = send(agents.triage, "s-2", "focus_snapshot", {}, coordination_id="c", ts=1000)
    later = send(agents.triage, "s-3", "focus_snapshot", {}, coordination_id="c", ts=1500)

    assert first.warnings == []
    assert len(earlier.warnings) == 1
    assert "earlier" in earlier.warnings[0]
    # Still earlier than the newest ts seen (2000), not just the one before it.
    assert "earlier" in later.warnings[0]
    stored = Frame.objects.get(ltp_id="s-2")
    assert stored.warnings == earlier.warnings
    assert stored.data["ts"] == 1000
    assert stored.ts == datetime.fromtimestamp(1, tz=UTC)


def test_ts_order_is_per_sender(agents):
    send(agents.triage, "s-1", "focus_snapshot", {}, coordination_id="c", ts=2000)

    outcome = send(agents.metrics, "s-1", "focus_snapshot", {}, coordination_id="c", ts=1000)

    assert outcome.warnings == []


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-03-15T14:00:01.250Z", datetime(2024, 3, 15, 14, 0, 1, 250000, tzinfo=UTC)),
        ("2024-03-15T16:00:01+02:00", datetime(2024, 3, 15, 14, 0, 1, tzinfo=UTC)),
        ("2024-03-15T14:00:01", datetime(2024, 3, 15, 14, 0, 1, tzinfo=UTC)),
    ],
    ids=["utc-z", "offset", "no-zone-read-as-utc"],
)
def test_iso_ts_is_accepted_kept_raw_and_stored_normalised(agents, ts, expected):
    send(agents.triage, "s-1", "focus_snapshot", {}, coordination_id="c", ts=ts)

    stored = Frame.objects.get(ltp_id="s-1")
    assert stored.data["ts"] == ts  # the raw value, as sent and as hashed
    assert stored.ts == expected
    assert Agent.objects.get(pk=agents.triage.pk).last_ts_ms == int(expected.timestamp() * 1000)


def test_iso_and_millisecond_ts_are_compared_as_times(agents):
    send(agents.triage, "s-1", "focus_snapshot", {}, coordination_id="c", ts=1710511201000)

    earlier = send(
        agents.triage, "s-2", "focus_snapshot", {}, coordination_id="c", ts="2024-03-15T14:00:00Z"
    )
    later = send(
        agents.triage, "s-3", "focus_snapshot", {}, coordination_id="c", ts="2024-03-15T14:00:02Z"
    )

    assert "earlier" in earlier.warnings[0]
    assert later.warnings == []
