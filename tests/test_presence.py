"""Presence from stored deadlines: the sweeper marks connected agents whose heartbeat is
overdue silent, and nothing else."""

from datetime import timedelta

import pytest
from django.utils import timezone

from coordination import presence, sweeper
from coordination.models import Agent, Connection, Frame, Presence
from tests.factories import frame, live_connection, send
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def hello(agent):
    send(agent, frame("h1", "hello", {"coordination_id": KEY}, coordination_id=None))


def connected_and_overdue(agent, connections=1):
    for _ in range(connections):
        live_connection(agent)
    Agent.objects.filter(pk=agent.pk).update(
        presence=Presence.ONLINE,
        heartbeat_deadline=timezone.now() - timedelta(seconds=1),
    )


def test_overdue_connected_agent_becomes_silent_with_a_frame_in_its_coordination(agents):
    hello(agents.metrics)
    connected_and_overdue(agents.metrics)

    (line,) = sweeper.sweep()
    assert line.startswith("metrics-agent: silent (heartbeat overdue since ")
    assert Agent.objects.get(name="metrics-agent").presence == Presence.SILENT
    (change,) = Frame.objects.filter(coordination__key=KEY, type="presence")
    assert (change.payload["previous"], change.payload["presence"]) == ("online", "silent")


def test_disconnected_agent_is_offline_not_silent(agents):
    connected_and_overdue(agents.metrics, connections=0)
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.OFFLINE)

    assert sweeper.sweep() == []
    assert Agent.objects.get(name="metrics-agent").presence == Presence.OFFLINE


def test_heartbeat_landing_after_the_sweepers_read_keeps_the_agent_online(agents):
    connected_and_overdue(agents.metrics)
    read_by_sweeper = Agent.objects.get(pk=agents.metrics.pk)

    # The heartbeat arrives between the sweeper's read and its claim.
    presence.saw_agent(Agent.objects.get(pk=agents.metrics.pk), heartbeat=True)

    assert not presence.silenced(read_by_sweeper)
    assert Agent.objects.get(name="metrics-agent").presence == Presence.ONLINE


def test_heartbeat_of_a_silent_agent_brings_it_back_even_from_a_stale_object(agents):
    hello(agents.metrics)
    stale = Agent.objects.get(pk=agents.metrics.pk)  # what a connection holds since connect
    connected_and_overdue(agents.metrics)
    sweeper.sweep()

    presence.saw_agent(stale, heartbeat=True)

    assert Agent.objects.get(name="metrics-agent").presence == Presence.ONLINE
    reasons = [f.payload["reason"] for f in Frame.objects.filter(type="presence").order_by("seq")]
    assert reasons[-1] == "heartbeat resumed"


def test_a_connection_whose_process_died_expires_and_its_agent_goes_offline(agents):
    """The disconnect handler of a killed process never runs: its row stops being refreshed
    and the sweeper takes it, so the agent is offline, not silent forever."""
    hello(agents.metrics)
    live_connection(agents.metrics)
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.ONLINE)
    Connection.objects.update(alive_until=timezone.now() - timedelta(seconds=1))

    assert sweeper.sweep() == ["metrics-agent: offline (connection lost)"]
    assert Agent.objects.get(name="metrics-agent").presence == Presence.OFFLINE
    assert not Connection.objects.exists()
    change = Frame.objects.get(coordination__key=KEY, type="presence")
    assert change.payload["presence"] == "offline"
    assert change.payload["reason"].startswith("connection lost")


def test_an_agent_with_another_live_connection_stays_online(agents):
    live_connection(agents.metrics)
    live_connection(agents.metrics)
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.ONLINE)
    stale = Connection.objects.first()
    Connection.objects.filter(pk=stale.pk).update(alive_until=timezone.now())

    assert sweeper.sweep() == []
    assert Agent.objects.get(name="metrics-agent").presence == Presence.ONLINE
    assert Connection.objects.count() == 1
