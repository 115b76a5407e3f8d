"""LtpClient against a real daphne: nothing is lost across a dropped connection, nothing is
stored or handed over twice."""

import asyncio
import json
import socket

import pytest
from asgiref.sync import sync_to_async
from ltpdash_client import LtpClient

from coordination.models import Frame
from tests.factories import aeventually, metrics_client, triage_client, until_acked

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NET = "incident-net"


def dead_url() -> str:
    """A websocket URL nothing listens on: connecting to it fails like a network outage."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws/agent/"


class RecordingClient(LtpClient):
    """Keeps every message the server sent, before the client's own dedup."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire: list[dict] = []

    async def _on_message(self, text):
        self.wire.append(json.loads(text))
        await super()._on_message(text)


def _copies(sender, frame_id):
    return Frame.objects.filter(sender=sender, ltp_id=frame_id).count()


SNAPSHOT = {"type": "focus_snapshot", "payload": {"state": "checking the queue"}}


async def test_frame_sent_while_the_network_is_down_is_sent_after_reconnect_and_stored_once(
    live, agents
):
    client = triage_client(live, agents, coordination_id=NET, backoff=(0.05, 0.2))
    async with client:
        url, client.url = client.url, dead_url()
        await client.drop()

        async def down():
            return not client.connected.is_set()

        await aeventually(down, what="the client noticed the drop")
        sending = asyncio.create_task(client.send({**SNAPSHOT, "id": "snap-1"}, timeout=30))
        await asyncio.sleep(0.3)  # several reconnect attempts fail meanwhile
        assert not sending.done()
        assert await sync_to_async(_copies)("triage-agent", "snap-1") == 0

        client.url = url  # the network is back
        [ack] = await sending

    assert ack["type"] == "ack"
    assert ack["payload"]["frame_id"] == "snap-1"
    assert ack["payload"]["duplicate"] is False
    assert client.reconnects == 1
    assert await sync_to_async(_copies)("triage-agent", "snap-1") == 1


async def test_frame_in_flight_when_the_socket_drops_is_stored_once(live, agents):
    client = triage_client(live, agents, coordination_id=NET, backoff=(0.05, 0.2))
    async with client:
        sending = asyncio.create_task(client.send({**SNAPSHOT, "id": "snap-2"}))
        await client.drop()
        [ack] = await sending

        async def reconnected():
            return client.reconnects == 1 and client.connected.is_set()

        await aeventually(reconnected, what="the client reconnected")
        # Whatever it resent after the reconnect is answered too, and is not a new frame.
        [again] = await client.send({**SNAPSHOT, "id": "snap-2"})

    assert ack["type"] == "ack"
    assert again["payload"]["duplicate"] is True
    assert again["payload"]["seq"] == ack["payload"]["seq"]
    assert await sync_to_async(_copies)("triage-agent", "snap-2") == 1


async def test_pushed_frame_not_yet_acked_is_pushed_again_but_handed_over_once(live, agents):
    triage = triage_client(live, agents, coordination_id=NET)
    metrics = RecordingClient(
        live.agent_url,
        agents.metrics_token,
        "metrics-agent",
        coordination_id=NET,
        auto_ack=False,
        backoff=(0.05, 0.2),
    )
    async with metrics, triage:
        await triage.send(
            {"type": "route_request", "id": "rr-1", "payload": {"target": "metrics-agent"}}
        )
        request = await metrics.receive(type="route_request")
        assert request["id"] == "rr-1"

        await metrics.drop()

        async def reconnected():
            return metrics.reconnects == 1 and metrics.connected.is_set()

        await aeventually(reconnected, what="the metrics agent reconnected")
        # The server answers in order: once this is acked, the replay after the reconnect's
        # hello has been read.
        await metrics.send({"type": "heartbeat", "payload": {"seq": 1}})

        assert [f["id"] for f in metrics.wire if f["type"] == "route_request"] == ["rr-1", "rr-1"]
        assert metrics.inbox.empty()  # the second copy was not handed over

        await metrics.ack("rr-1")

        await until_acked(agents.metrics, "rr-1")


async def test_pushed_frames_are_acked_automatically(live, agents):
    triage = triage_client(live, agents, coordination_id=NET)
    metrics = metrics_client(live, agents, coordination_id=NET)
    async with metrics, triage:
        await triage.send(
            {"type": "route_request", "id": "rr-2", "payload": {"target": "metrics-agent"}}
        )
        await metrics.receive(type="route_request")

        await until_acked(agents.metrics, "rr-2")


async def test_send_raw_returns_the_servers_answer_to_bad_input(live, agents):
    async with triage_client(live, agents, coordination_id=None) as client:
        malformed = await client.send_raw('{"v": "0.1", "id": ', timeout=5)
        wrong_version = await client.send_raw(
            json.dumps({"v": "0.2", "id": "old-1", "ts": 1, "type": "hello", "payload": {}}),
            timeout=5,
        )
        [ack] = await client.send({"type": "hello", "id": "new-1", "payload": {}})

    assert malformed["payload"]["code"] == "malformed_json"
    assert wrong_version["payload"]["code"] == "unsupported_version"
    assert wrong_version["payload"]["frame_id"] == "old-1"
    assert ack["type"] == "ack"


async def test_a_client_that_does_not_reconnect_fails_sends_at_once_after_a_close(live, agents):
    client = triage_client(live, agents, coordination_id=None, reconnect=False)
    async with client:
        await client.drop()

        async def down():
            return not client.connected.is_set()

        await aeventually(down, what="the client noticed the close")
        with pytest.raises(ConnectionError, match="does not reconnect"):
            await client.send({"type": "orientation", "payload": {}}, timeout=30)
