"""The same (sender, id) is stored once and acknowledged every time it is sent, whichever
transport brought it; the retry never has a second effect (PROTOCOL §1)."""

import json

import pytest
from asgiref.sync import sync_to_async

from coordination.models import Delivery, Escalation, Frame, RouteRequest
from tests.factories import agent_connection, frame, post_frames, triage_client

socket_test = pytest.mark.django_db(transaction=True)


def route_request(frame_id="rr-1"):
    return frame(frame_id, "route_request", {"target": "human", "need": "approve the failover"})


SEED_BUNDLE = {
    "id": "seed-1",
    "coordination_id": "incident-4821",
    "orientation": {"role": "triage-agent", "intent": "diagnose backlog"},
    "route_request": {"target": "human", "need": "queue depth and error rate"},
}


def effects(frame_id="rr-1"):
    """What a route_request to a human sets in motion: the stored frame, the request, the
    escalation, and the chain entries (the request plus ltpdash's escalate step)."""
    return {
        "stored": Frame.objects.filter(sender="triage-agent", ltp_id=frame_id).count(),
        "requests": RouteRequest.objects.filter(ltp_id=frame_id).count(),
        "escalations": Escalation.objects.count(),
        # Presence changes (the socket closing) are chain entries too, but not effects.
        "chain": Frame.objects.filter(coordination__key="incident-4821")
        .exclude(type="presence")
        .count(),
    }


ONCE = {"stored": 1, "requests": 1, "escalations": 1, "chain": 2}


async def _reply(socket):
    """The next ack or error; frames ltpdash pushes meanwhile (the escalate step owed to the
    requester) are not answers to what was sent."""
    while True:
        frame = await socket.receive_json_from()
        if frame["type"] in {"ack", "error"}:
            return frame


def _assert_same_ack(first, second):
    assert first["type"] == second["type"] == "ack"
    assert first["payload"]["duplicate"] is False
    assert second["payload"]["duplicate"] is True
    for key in ("frame_id", "seq", "hash", "warnings"):
        assert second["payload"][key] == first["payload"][key]


@socket_test
async def test_same_frame_twice_on_the_socket_is_stored_once_and_acked_twice(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(route_request())
        first = await _reply(socket)
        await socket.send_json_to(route_request())
        second = await _reply(socket)

    _assert_same_ack(first, second)
    assert await sync_to_async(effects)() == ONCE


@socket_test
async def test_retry_on_a_new_connection_is_a_duplicate(agents):
    for expected in (False, True):
        async with agent_connection(agents.triage_token) as socket:
            await socket.send_json_to(route_request())
            ack = await _reply(socket)
        assert ack["payload"]["duplicate"] is expected

    assert await sync_to_async(effects)() == ONCE


@socket_test
async def test_retried_frame_with_changed_content_keeps_the_first_version(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(route_request())
        first = await _reply(socket)
        changed = route_request()
        changed["payload"] = {"target": "human", "need": "something else entirely"}
        await socket.send_json_to(changed)
        second = await _reply(socket)

    _assert_same_ack(first, second)
    stored = await Frame.objects.aget(ltp_id="rr-1")
    assert stored.payload["need"] == "approve the failover"


@socket_test
async def test_retried_bundle_with_an_id_is_stored_once(agents):
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(SEED_BUNDLE)
        first = [await _reply(socket) for _ in range(2)]
        await socket.send_json_to(SEED_BUNDLE)
        second = [await _reply(socket) for _ in range(2)]

    assert [a["payload"]["frame_id"] for a in first] == [
        "seed-1:orientation",
        "seed-1:route_request",
    ]
    for a, b in zip(first, second, strict=True):
        _assert_same_ack(a, b)
    assert await sync_to_async(effects)("seed-1:route_request") == {**ONCE, "chain": 3}


@socket_test
async def test_two_agents_may_use_the_same_id(agents):
    for token in (agents.triage_token, agents.metrics_token):
        async with agent_connection(token) as socket:
            await socket.send_json_to(route_request("shared-id"))
            ack = await _reply(socket)
        assert ack["type"] == "ack"
        assert ack["payload"]["duplicate"] is False

    senders = Frame.objects.filter(ltp_id="shared-id").order_by("sender").values_list("sender")
    assert [s async for (s,) in senders] == ["metrics-agent", "triage-agent"]


def test_same_frame_twice_over_http_is_stored_once_and_acked_twice(client, agents):
    first = post_frames(client, agents.triage_token, route_request())
    second = post_frames(client, agents.triage_token, route_request())

    assert first.status_code == second.status_code == 200
    _assert_same_ack(first.json()["frames"][0], second.json()["frames"][0])
    assert effects() == ONCE


def test_retried_bundle_over_http_is_stored_once(client, agents):
    first = post_frames(client, agents.triage_token, SEED_BUNDLE).json()["frames"]
    second = post_frames(client, agents.triage_token, SEED_BUNDLE).json()["frames"]

    for a, b in zip(first, second, strict=True):
        _assert_same_ack(a, b)
    assert effects("seed-1:route_request") == {**ONCE, "chain": 3}


def test_same_frame_twice_in_one_request_is_stored_once(client, agents):
    response = post_frames(client, agents.triage_token, [route_request(), route_request()])

    _assert_same_ack(*response.json()["frames"])
    assert effects() == ONCE


@socket_test
async def test_frame_sent_over_http_then_over_the_socket_is_a_duplicate(async_client, agents):
    response = await async_client.post(
        "/api/v1/frames",
        json.dumps(route_request()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {agents.triage_token}"},
    )
    assert response.status_code == 200
    [over_http] = response.json()["frames"]

    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(route_request())
        over_socket = await _reply(socket)

    _assert_same_ack(over_http, over_socket)
    assert await sync_to_async(effects)() == ONCE


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_same_frame_twice_to_real_daphne_is_stored_once_and_acked_twice(live, agents):
    async with triage_client(live, agents, coordination_id=None) as client:
        [first] = await client.send(route_request())
        [second] = await client.send(route_request())
        # The request escalated once, so the requester is owed exactly one escalate step.
        step = await client.receive(type="route_response")
        assert step["payload"]["in_reply_to"] == "rr-1"

    _assert_same_ack(first, second)
    assert await sync_to_async(effects)() == ONCE
    owed = Delivery.objects.filter(agent=agents.triage)
    assert await owed.acount() == 1
