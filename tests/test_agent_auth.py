"""Agents authenticate with a Bearer token on both transports, and speak only for themselves."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from coordination.consumers import CLOSE_UNAUTHORIZED
from coordination.models import Frame
from ltpdash.asgi import application
from tests.factories import agent_socket, frame, post_frames

# Consumers run their ORM calls in another thread, which must see what the test committed.
socket_test = pytest.mark.django_db(transaction=True)


def hello(frame_id="h-1", **extra):
    return frame(frame_id, "hello", coordination_id=None, **extra)


async def _refused(headers):
    socket = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    connected, _ = await socket.connect()
    try:
        # Accepted only so that the agent can read why it is refused.
        assert connected
        error = await socket.receive_json_from()
        closed = await socket.receive_output()
        return error, closed
    finally:
        await socket.disconnect()


@socket_test
@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer ltp_not-a-token")],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"Basic dHJpYWdlOnB3")],
    ],
    ids=["missing", "unknown", "empty", "not-bearer"],
)
async def test_socket_without_a_valid_token_gets_unauthorized_then_close_4401(agents, headers):
    error, closed = await _refused(headers)

    assert error["type"] == "error"
    assert error["from"] == "ltpdash"
    assert error["payload"]["code"] == "unauthorized"
    assert closed == {
        "type": "websocket.close",
        "code": CLOSE_UNAUTHORIZED,
        "reason": "unauthorized",
    }


@socket_test
async def test_socket_with_a_rotated_token_is_refused(agents):
    old = agents.triage_token
    await sync_to_async(agents.triage.rotate_token)()

    error, closed = await _refused([(b"authorization", f"Bearer {old}".encode())])

    assert error["payload"]["code"] == "unauthorized"
    assert closed["code"] == CLOSE_UNAUTHORIZED


@socket_test
async def test_socket_refuses_a_frame_from_another_agent_and_stays_open(agents):
    socket = agent_socket(agents.triage_token)
    connected, _ = await socket.connect()
    assert connected
    try:
        await socket.send_json_to(hello("spoof", **{"from": "metrics-agent"}))
        error = await socket.receive_json_from()
        assert error["type"] == "error"
        assert error["payload"] == {
            "code": "sender_mismatch",
            "message": error["payload"]["message"],
            "frame_id": "spoof",
        }
        assert "metrics-agent" in error["payload"]["message"]

        await socket.send_json_to(hello("mine"))
        ack = await socket.receive_json_from()
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "mine"
    finally:
        await socket.disconnect()

    frames = [f async for f in Frame.objects.filter(type="hello").values_list("sender", "raw")]
    assert [(sender, json.loads(raw)["id"]) for sender, raw in frames] == [("triage-agent", "mine")]


@socket_test
async def test_socket_fills_in_a_missing_from_with_the_agents_own_name(agents):
    socket = agent_socket(agents.metrics_token)
    await socket.connect()
    try:
        await socket.send_json_to(hello("anon"))
        assert (await socket.receive_json_from())["type"] == "ack"
    finally:
        await socket.disconnect()

    frame = await Frame.objects.aget(ltp_id="anon")
    assert frame.sender == "metrics-agent"
    assert frame.data["from"] == "metrics-agent"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ltp_not-a-token", "Bearer ", "Token something"],
    ids=["missing", "unknown", "empty", "not-bearer"],
)
def test_http_without_a_valid_token_is_401_with_a_json_error(client, agents, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}

    for response in [
        client.post(
            "/api/v1/frames", json.dumps(hello()), content_type="application/json", **headers
        ),
        client.get("/api/v1/coordinations/incident-4821/context", **headers),
        client.get("/api/v1/coordinations/incident-4821/trace", **headers),
    ]:
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthorized"

    assert not Frame.objects.exists()


def test_http_refuses_a_frame_from_another_agent(client, agents):
    response = post_frames(client, agents.triage_token, hello("spoof", **{"from": "metrics-agent"}))

    assert response.status_code == 400
    [error] = response.json()["frames"]
    assert error["payload"]["code"] == "sender_mismatch"
    assert error["payload"]["frame_id"] == "spoof"
    assert not Frame.objects.exists()
