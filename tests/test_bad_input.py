"""Bad input is refused with a stable error code, stores nothing, and leaves the socket usable.

Only authentication failures and abuse (rate and size limits past what the server reads)
close a connection (PROTOCOL §4).
"""

import json

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.test import override_settings

from coordination.consumers import CLOSE_RATE_LIMITED, MAX_STRIKES
from coordination.models import Coordination, Frame
from tests import factories
from tests.factories import agent_connection, agent_socket, post_frames

socket_test = pytest.mark.django_db(transaction=True)


def frame(frame_id="ok-1", **changes):
    """A good orientation, with `changes`; a field changed to DROP is left out."""
    base = factories.frame(
        frame_id,
        "orientation",
        {"role": "triage-agent", "intent": "diagnose backlog"},
        coordination_id="incident-bad",
    )
    base.update(changes)
    return {key: value for key, value in base.items() if value is not DROP}


DROP = object()


def text(value) -> str:
    return json.dumps(value, separators=(",", ":"))


# (case id, message as sent, expected code, frame_id the error names)
BAD_MESSAGES = [
    ("malformed-json", '{"v": "0.1", "id": "x", ', "malformed_json", None),
    ("nan", text(frame("nan"))[:-1] + ', "score": NaN}', "malformed_json", None),
    (
        "infinity-literal",
        text(frame("inf")).replace("1764000000000", "Infinity"),
        "malformed_json",
        None,
    ),
    ("version-0.0", text(frame("v0", v="0.0")), "unsupported_version", "v0"),
    ("version-number", text(frame("vnum", v=0.1)), "unsupported_version", "vnum"),
    ("version-missing", text(frame("vmiss", v=DROP)), "unsupported_version", "vmiss"),
    ("id-missing", text(frame(id=DROP)), "missing_id", None),
    ("id-empty", text(frame("")), "missing_id", None),
    ("id-number", text(frame(17)), "missing_id", None),
    ("payload-list", text(frame("plist", payload=["a"])), "payload_not_object", "plist"),
    ("payload-string", text(frame("pstr", payload="hi")), "payload_not_object", "pstr"),
    ("payload-missing", text(frame("pmiss", payload=DROP)), "payload_not_object", "pmiss"),
    (
        "from-another-agent",
        text(frame("spoof", **{"from": "metrics-agent"})),
        "sender_mismatch",
        "spoof",
    ),
    ("ts-unreadable", text(frame("tsbad", ts="yesterday")), "invalid_ts", "tsbad"),
    ("ts-boolean", text(frame("tsbool", ts=True)), "invalid_ts", "tsbool"),
    ("type-missing", text(frame("tmiss", type=DROP)), "invalid_type", "tmiss"),
    (
        "integer-beyond-2^53",
        text(frame("bigint", payload={"queue_depth": 2**53})),
        "unsafe_integer",
        "bigint",
    ),
    (
        "negative-integer-beyond-2^53",
        text(frame("negint", payload={"deep": [{"n": -(2**53)}]})),
        "unsafe_integer",
        "negint",
    ),
    (
        "float-overflowing-to-infinity",
        text(frame("huge", payload={"x": 1})).replace('"x":1', '"x":1e400'),
        "unrepresentable_value",
        "huge",
    ),
    ("a-number", "5", "not_an_object", None),
    ("a-bare-string", '"hello"', "not_an_object", None),
]
CASE_IDS = [case[0] for case in BAD_MESSAGES]


def _counts():
    return Frame.objects.count(), Coordination.objects.count()


def _sent_by_triage():
    # Not a count of all frames: daphne records the disconnect (a presence frame) on its own
    # schedule.
    return list(Frame.objects.filter(sender="triage-agent").values_list("ltp_id", flat=True))


async def _ack_after(socket, good_id):
    await socket.send_json_to(frame(good_id))
    reply = await socket.receive_json_from()
    assert reply["type"] == "ack", reply
    assert reply["payload"]["frame_id"] == good_id
    return reply


@socket_test
@pytest.mark.parametrize(("case", "message", "code", "frame_id"), BAD_MESSAGES, ids=CASE_IDS)
async def test_bad_frame_on_socket_is_refused_with_its_code_and_socket_stays_usable(
    agents, case, message, code, frame_id
):
    socket = agent_socket(agents.triage_token)
    assert (await socket.connect())[0]
    try:
        await socket.send_to(text_data=message)
        error = await socket.receive_json_from()
        assert error["type"] == "error"
        assert error["from"] == "ltpdash"
        assert error["payload"]["code"] == code
        assert error["payload"]["message"]
        assert error["payload"].get("frame_id") == frame_id
        assert await sync_to_async(_counts)() == (0, 0)

        await _ack_after(socket, "good-after-" + case)
        assert await sync_to_async(_counts)() == (1, 1)
    finally:
        await socket.disconnect()


@pytest.mark.parametrize(("case", "message", "code", "frame_id"), BAD_MESSAGES, ids=CASE_IDS)
def test_bad_frame_over_http_is_refused_with_its_code(
    client, agents, case, message, code, frame_id
):
    response = post_frames(client, agents.triage_token, message)

    assert response.status_code == 400
    body = response.json()
    if code == "malformed_json":
        # The body as a whole could not be read: there are no frames to answer one by one.
        assert body["error"]["code"] == code
    else:
        [error] = body["frames"]
        assert error["type"] == "error"
        assert error["payload"]["code"] == code
        assert error["payload"].get("frame_id") == frame_id
    assert _counts() == (0, 0)


def test_http_body_that_is_not_utf8_is_malformed_json(client, agents):
    response = post_frames(client, agents.triage_token, b'{"v": "0.1", "id": "\xff\xfe"}')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@socket_test
async def test_binary_message_is_read_as_utf8_json(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_to(bytes_data=b"\xff\xfe not text")
        error = await socket.receive_json_from()
        assert error["payload"]["code"] == "malformed_json"

        await socket.send_to(bytes_data=text(frame("binary-ok")).encode())
        ack = await socket.receive_json_from()
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "binary-ok"


@socket_test
async def test_unknown_type_is_stored_and_acked_with_a_warning(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(frame("future-1", type="telepathy", payload={"x": 1}))
        ack = await socket.receive_json_from()

    assert ack["type"] == "ack"
    assert ack["payload"]["duplicate"] is False
    [warning] = ack["payload"]["warnings"]
    assert "telepathy" in warning
    stored = await Frame.objects.aget(ltp_id="future-1")
    assert stored.type == "telepathy"
    assert stored.payload == {"x": 1}
    assert stored.warnings == ack["payload"]["warnings"]


def test_unknown_type_over_http_is_stored_and_acked_with_a_warning(client, agents):
    response = post_frames(client, agents.triage_token, text(frame("future-2", type="telepathy")))

    assert response.status_code == 200
    [ack] = response.json()["frames"]
    assert ack["type"] == "ack"
    assert "telepathy" in ack["payload"]["warnings"][0]
    assert Frame.objects.filter(ltp_id="future-2", type="telepathy").exists()


@socket_test
async def test_bundle_with_a_non_object_value_refuses_only_that_frame(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(
            {
                "id": "b-1",
                "coordination_id": "incident-bad",
                "orientation": 5,
                "route_request": {"target": "human", "need": "someone to look"},
            }
        )
        first = await socket.receive_json_from()
        second = await socket.receive_json_from()

    assert first["type"] == "error"
    assert first["payload"]["code"] == "payload_not_object"
    assert first["payload"]["frame_id"] == "b-1:orientation"
    assert second["type"] == "ack"
    assert second["payload"]["frame_id"] == "b-1:route_request"
    ids = [f async for f in Frame.objects.filter(sender="triage-agent").values_list("ltp_id")]
    assert ids == [("b-1:route_request",)]


# --- size limits -------------------------------------------------------------------------------


def padded(frame_id: str, size: int) -> str:
    """A valid frame whose JSON text is exactly `size` bytes."""
    empty = text(frame(frame_id, payload={"pad": ""}))
    return text(frame(frame_id, payload={"pad": "a" * (size - len(empty))}))


@socket_test
async def test_frame_over_the_default_64_kib_is_refused_and_one_under_it_is_stored(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_to(text_data=padded("big", 64 * 1024 + 1))
        error = await socket.receive_json_from()
        assert error["payload"]["code"] == "frame_too_large"
        assert await sync_to_async(_counts)() == (0, 0)

        await socket.send_to(text_data=padded("fits", 64 * 1024))
        ack = await socket.receive_json_from()
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "fits"


@socket_test
@override_settings(LTP_MAX_FRAME_BYTES=2048)
async def test_frame_size_limit_is_configurable(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_to(text_data=padded("big", 2049))
        error = await socket.receive_json_from()
        assert error["payload"]["code"] == "frame_too_large"
        assert "2048" in error["payload"]["message"]
        assert await sync_to_async(_counts)() == (0, 0)

        await _ack_after(socket, "small")


@override_settings(LTP_MAX_FRAME_BYTES=2048)
def test_frame_over_the_size_limit_over_http_is_413(client, agents):
    single = post_frames(client, agents.triage_token, padded("big", 2049))
    in_a_list = post_frames(
        client, agents.triage_token, "[" + text(frame("small")) + "," + padded("big", 2049) + "]"
    )

    for response in (single, in_a_list):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "frame_too_large"
    assert _counts() == (0, 0)  # the small frame beside the big one is not stored either


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_real_daphne_refuses_a_frame_between_64_kib_and_1_mib_and_stays_usable(live, agents):
    headers = {"Authorization": f"Bearer {agents.triage_token}"}
    async with websockets.connect(live.agent_url, additional_headers=headers) as ws:
        await ws.send(padded("big", 512 * 1024))
        error = json.loads(await ws.recv())
        assert error["payload"]["code"] == "frame_too_large"

        await ws.send(text(frame("after-big")))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "after-big"
    assert await sync_to_async(_sent_by_triage)() == ["after-big"]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_real_daphne_drops_a_connection_that_sends_more_than_1_mib(live, agents):
    """daphne (autobahn) enforces its own 1 MiB message limit before ltpdash sees anything:
    it drops the TCP connection without a close frame, so the agent sees 1006."""
    headers = {"Authorization": f"Bearer {agents.triage_token}"}
    async with websockets.connect(live.agent_url, additional_headers=headers) as ws:
        await ws.send(padded("huge", 1024 * 1024 + 1024))
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code in {1006, 1009}

    async with websockets.connect(live.agent_url, additional_headers=headers) as ws:
        await ws.send(text(frame("after-huge")))
        assert json.loads(await ws.recv())["type"] == "ack"
    assert await sync_to_async(_sent_by_triage)() == ["after-huge"]


# --- rate limits ---------------------------------------------------------------------------------


@socket_test
@override_settings(LTP_RATE_LIMIT=1)
async def test_flood_gets_rate_limited_then_closed_4429_while_other_agents_are_served(agents):
    flooder = agent_socket(agents.triage_token)
    neighbour = agent_socket(agents.metrics_token)
    await flooder.connect()
    await neighbour.connect()
    try:
        # Heartbeats: the cheapest frame there is, so the flood is all about the rate.
        flood = 3 * MAX_STRIKES
        for n in range(flood):
            await flooder.send_json_to(
                {"v": "0.1", "id": f"hb-{n}", "ts": 1, "type": "heartbeat", "payload": {}}
            )

        await neighbour.send_json_to(frame("neighbour-1"))
        ack = await neighbour.receive_json_from()
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "neighbour-1"

        codes = []
        for _ in range(flood + 1):
            message = await flooder.receive_output()
            if message["type"] == "websocket.close":
                closed = message
                break
            reply = json.loads(message["text"])
            codes.append(reply["payload"].get("code", reply["type"]))
        else:
            pytest.fail("the flooding connection was never closed")

        assert closed["code"] == CLOSE_RATE_LIMITED
        assert codes.count("rate_limited") >= MAX_STRIKES
        assert "ack" in codes  # the first frames were within the burst
        assert codes[-1] == "rate_limited"
        # The rest of the flood, already on its way, is no longer read (or answered).
        assert await flooder.receive_nothing(0.2)

        await neighbour.send_json_to(frame("neighbour-2"))
        ack = await neighbour.receive_json_from()
        assert ack["payload"]["frame_id"] == "neighbour-2"
    finally:
        await flooder.disconnect()
        await neighbour.disconnect()


@socket_test
@pytest.mark.parametrize("message", ["[]", "{}"], ids=["empty-list", "empty-bundle"])
async def test_an_empty_message_gets_a_clear_error_and_the_socket_stays_usable(agents, message):
    socket = agent_socket(agents.triage_token)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_to(text_data=message)
    reply = await socket.receive_json_from()
    assert reply["type"] == "error"
    assert reply["payload"]["code"] == "empty_message"
    await _ack_after(socket, "after-empty")
    await socket.disconnect()


@socket_test
async def test_a_refused_hello_replays_nothing(agents):
    socket = agent_socket(agents.triage_token)
    assert (await socket.connect())[0]
    try:
        await _ack_after(socket, "orientation-first")  # the agent now has a coordination
        await socket.send_json_to(
            {"v": "0.0", "id": "bad-hello", "ts": 1, "type": "hello", "payload": {}}
        )
        error = await socket.receive_json_from()
        assert error["payload"]["code"] == "unsupported_version"
        assert await socket.receive_nothing(timeout=0.3)

        await socket.send_json_to(
            {"v": "0.1", "id": "good-hello", "ts": 2, "type": "hello", "payload": {}}
        )
        ack = await socket.receive_json_from()
        assert ack["type"] == "ack"
        replayed = await socket.receive_json_from()  # continuity: its own orientation
        assert replayed["id"] == "orientation-first"
    finally:
        await socket.disconnect()
