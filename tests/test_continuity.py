"""On (re)connect after hello, an agent gets the coordination's latest focus_snapshot, its own
last orientation there, then every frame still owed to it (PROTOCOL §4)."""

import pytest
from asgiref.sync import sync_to_async

from coordination.decisions import APPROVE, decide
from coordination.models import Frame
from coordination.trace import verify_trace
from tests.factories import agent_socket, seed
from tests.seed import KEY

pytestmark = pytest.mark.django_db(transaction=True)


async def _hello(socket, frame_id: str) -> None:
    await socket.send_json_to(
        {
            "v": "0.1",
            "id": frame_id,
            "ts": 1764000001000,
            "type": "hello",
            "payload": {"coordination_id": KEY},
        }
    )
    ack = await socket.receive_json_from()
    assert ack["type"] == "ack" and ack["payload"]["frame_id"] == frame_id


async def test_hello_replays_snapshot_orientation_then_the_owed_decision(agents, operators):
    escalation = await sync_to_async(seed)(agents)  # triage asked, metrics escalated
    await sync_to_async(decide)(escalation.pk, operators["alice"], APPROVE, "page them")

    socket = agent_socket(agents.triage_token)
    assert (await socket.connect())[0]
    try:
        await _hello(socket, "triage-back")
        snapshot = await socket.receive_json_from()
        orientation = await socket.receive_json_from()
        owed = [await socket.receive_json_from() for _ in range(2)]
    finally:
        await socket.disconnect()

    assert snapshot["type"] == "focus_snapshot"
    assert snapshot["payload"]["state"] == "diagnosis pending human approval"
    assert orientation["type"] == "orientation" and orientation["from"] == "triage-agent"
    assert orientation["payload"]["guardrails"] == ["no production writes"]
    # Owed to triage-agent, in order: metrics-agent's answer, then the human decision.
    assert [f["from"] for f in owed] == ["metrics-agent", "human:alice"]
    assert owed[1]["payload"]["branches"][0]["reason"] == "page them"


async def test_acknowledged_frames_are_not_replayed_on_the_next_hello(agents, operators):
    await sync_to_async(seed)(agents)
    socket = agent_socket(agents.triage_token)
    assert (await socket.connect())[0]
    try:
        await _hello(socket, "first-hello")
        replayed = [await socket.receive_json_from() for _ in range(3)]
        answer = replayed[2]
        assert answer["from"] == "metrics-agent"
        await socket.send_json_to({"type": "ack", "payload": {"frame_id": answer["id"]}})
        await _hello(socket, "second-hello")
        snapshot, orientation = [await socket.receive_json_from() for _ in range(2)]
        assert (snapshot["type"], orientation["type"]) == ("focus_snapshot", "orientation")
        assert await socket.receive_nothing(timeout=0.3)
    finally:
        await socket.disconnect()


def test_operator_downloads_a_trace_that_verifies(client_for, agents):
    seed(agents)
    client = client_for("vic")

    response = client.get(f"/coordinations/{KEY}/trace.jsonl")

    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    verdict = verify_trace(lines)
    assert verdict.ok, verdict.why
    assert verdict.entries == Frame.objects.filter(coordination__key=KEY).count() == 4
