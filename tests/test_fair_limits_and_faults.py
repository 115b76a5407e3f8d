"""Issue 9: no agent crowds out another, presence cannot leak, and faults answer truthfully.

A budget in frames (not messages) per agent, shared by its sockets and HTTP; a bounded number
of sockets per agent; idle HTTP connections closed; a killed daphne's agents offline within
the heartbeat timeout; a stored frame acknowledged and a decision reported as made with the
channel layer (Redis) away; our own faults answered with `internal_error`.
"""

import asyncio
import json
import signal
import socket
import time
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client, override_settings
from ltpdash_client import LtpClient

from coordination import limits, sweeper
from coordination.consumers import CLOSE_TOO_MANY_CONNECTIONS
from coordination.live import LIVE_CATCH_UP, CoordinationPage
from coordination.models import Agent, Coordination, Escalation, Frame, Presence
from coordination.processes import free_port
from coordination.trace import verify_trace
from tests.factories import Operator, agent_socket, seed, send, start_daphne, stop_daphne
from tests.seed import KEY
from tests.seed import SEED_RESPONSE_WITH_ID as SEED_RESPONSE

socket_test = pytest.mark.django_db(transaction=True)


def frame(frame_id, coordination_id="incident-fair", **changes):
    return {
        "v": "0.1", "id": frame_id, "ts": 1764000000000, "type": "orientation",
        "coordination_id": coordination_id, "payload": {"intent": "work"}, **changes,
    }  # fmt: skip


def post(token, body, client=None):
    return (client or Client()).post(
        "/api/v1/frames", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


# --- the budget counts frames, shared by every transport -------------------------------------


@socket_test
@override_settings(LTP_RATE_LIMIT=20)
async def test_a_list_of_frames_is_charged_per_frame_not_per_message(agents):
    socket = agent_socket(agents.triage_token)
    await socket.connect()
    acked = refused = 0
    started = time.monotonic()
    try:
        for n in range(3):
            batch = [frame(f"l{n}-{i}") for i in range(200)]
            await socket.send_to(text_data=json.dumps(batch))
        for _ in range(600):
            reply = json.loads(await socket.receive_from(timeout=30))
            if reply["type"] == "ack":
                acked += 1
            else:
                assert reply["payload"]["code"] == "rate_limited"
                assert reply["payload"]["frame_id"].startswith("l")
                refused += 1
    finally:
        await socket.disconnect()
    elapsed = time.monotonic() - started
    # The burst (2x the limit) plus what refilled meanwhile; before, all 600 were acked.
    assert acked <= 40 + 20 * elapsed + 5, (acked, elapsed)
    assert acked + refused == 600
    stored = await Frame.objects.filter(sender="triage-agent").acount()
    assert stored == acked


@pytest.mark.django_db
@override_settings(LTP_RATE_LIMIT=5)
def test_http_shares_the_agents_budget_and_answers_429_with_retry_after(agents):
    response = post(agents.triage_token, [frame(f"h{i}") for i in range(30)])
    assert response.status_code == 200
    replies = response.json()["frames"]
    acked = [r for r in replies if r["type"] == "ack"]
    assert 10 <= len(acked) <= 13  # the burst, and a token or two that refilled
    assert all(r["payload"]["code"] == "rate_limited" for r in replies[len(acked) :])
    assert int(response["Retry-After"]) >= 1
    assert Frame.objects.filter(sender="triage-agent").count() == len(acked)

    limits.admit(agents.triage.pk, 1000)  # whatever refilled meanwhile is spent
    response = post(agents.triage_token, frame("one-more"))
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"  # refused before parsing
    assert not Frame.objects.filter(ltp_id="one-more").exists()


@socket_test
@override_settings(LTP_RATE_LIMIT=5)
async def test_the_socket_and_http_draw_on_one_budget(agents):
    await sync_to_async(limits.admit)(agents.triage.pk, 1000)  # spent over HTTP, say
    socket = agent_socket(agents.triage_token)
    await socket.connect()
    try:
        await socket.send_to(text_data=json.dumps(frame("s1")))
        reply = json.loads(await socket.receive_from(timeout=10))
        assert reply["payload"]["code"] == "rate_limited"
    finally:
        await socket.disconnect()


@socket_test
@override_settings(LTP_MAX_CONNECTIONS_PER_AGENT=2)
async def test_an_agent_has_a_bounded_number_of_sockets(agents):
    first, second, third = (agent_socket(agents.triage_token) for _ in range(3))
    assert (await first.connect())[0] and (await second.connect())[0]
    try:
        assert (await third.connect())[0]
        refusal = json.loads(await third.receive_from(timeout=10))
        assert refusal["payload"]["code"] == "too_many_connections"
        closed = await third.receive_output(timeout=10)
        assert closed["code"] == CLOSE_TOO_MANY_CONNECTIONS
    finally:
        await first.disconnect()
        await second.disconnect()
    assert (await Agent.objects.aget(pk=agents.triage.pk)).presence == Presence.OFFLINE


# --- our own faults ------------------------------------------------------------------------


@socket_test
async def test_an_unexpected_fault_is_answered_internal_error_and_the_socket_stays_usable(
    agents, monkeypatch, caplog
):
    def broken(request):
        raise RuntimeError("a bug in routing")

    monkeypatch.setattr("coordination.ingest.decisions.route", broken)
    socket = agent_socket(agents.triage_token)
    await socket.connect()
    try:
        request = frame("r1", type="route_request", payload={"target": "metrics-agent"})
        await socket.send_to(text_data=json.dumps(request))
        reply = json.loads(await socket.receive_from(timeout=10))
        assert (reply["type"], reply["payload"]["code"]) == ("error", "internal_error")
        assert reply["payload"]["frame_id"] == "r1"
        await socket.send_to(text_data=json.dumps(frame("o1")))
        assert json.loads(await socket.receive_from(timeout=10))["type"] == "ack"
    finally:
        await socket.disconnect()
    assert not await Frame.objects.filter(ltp_id="r1").aexists()  # rolled back, not acked
    assert [r.message for r in caplog.records].count("ingesting a frame from triage-agent failed")


# --- live pages catch up a bounded amount --------------------------------------------------


@pytest.mark.django_db
def test_a_page_far_behind_gets_the_newest_frames_and_a_reload_link_not_the_whole_chain(
    agents, operators
):
    send(agents.triage, [frame(f"f{i}") for i in range(LIVE_CATCH_UP * 3)])
    coordination = Coordination.objects.get(key="incident-fair")
    page = CoordinationPage(operators["vic"], coordination, 0, {})
    html, more = page.changes()
    assert not more
    assert html.count('class="frame ') == LIVE_CATCH_UP
    skipped = coordination.head_seq - LIVE_CATCH_UP
    assert f"{skipped} earlier frames arrived while this page was away" in html
    assert page.changes() == ("", False)


# --- real daphne processes ----------------------------------------------------------------


@pytest.mark.e2e
@socket_test
def test_idle_half_open_http_connections_are_closed(tmp_path):
    server = start_daphne(tmp_path, {"LTPDASH_HTTP_IDLE_TIMEOUT": "1"})
    try:
        sockets = []
        for _ in range(300):
            held = socket.create_connection(("127.0.0.1", server.port))
            held.sendall(b"GET /coordinations/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end
            held.settimeout(15)
            sockets.append(held)
        for held in sockets:
            assert held.recv(100) == b""  # closed by the server
            held.close()
    finally:
        stop_daphne(server)


@pytest.mark.e2e
@socket_test
async def test_a_killed_daphnes_agents_go_offline_within_the_heartbeat_timeout(agents, tmp_path):
    timeout = 3
    server = await sync_to_async(start_daphne)(
        tmp_path, {"LTPDASH_HEARTBEAT_TIMEOUT": str(timeout)}
    )
    acked = []
    try:
        async with LtpClient(
            server.agent_url, agents.metrics_token, "metrics-agent",
            coordination_id=KEY, reconnect=False,
        ) as metrics:  # fmt: skip
            for i in range(20):
                acks = await metrics.send(frame(f"k{i}", coordination_id=KEY))
                acked.extend(a["payload"]["frame_id"] for a in acks if a["type"] == "ack")
            agent = await Agent.objects.aget(pk=agents.metrics.pk)
            assert agent.presence == Presence.ONLINE
            server.process.send_signal(signal.SIGKILL)
            await sync_to_async(server.process.wait)()
            killed = time.monotonic()
    finally:
        await sync_to_async(stop_daphne)(server)
    while time.monotonic() - killed < timeout:
        await sync_to_async(sweeper.sweep)()
        agent = await Agent.objects.aget(pk=agents.metrics.pk)
        if agent.presence == Presence.OFFLINE:
            break
        await asyncio.sleep(0.2)
    assert agent.presence == Presence.OFFLINE, f"still {agent.presence} after {timeout} s"
    stored = {f async for f in Frame.objects.filter(sender="metrics-agent").values_list(
        "ltp_id", flat=True)}  # fmt: skip
    assert set(acked) <= stored and len(acked) >= 20
    lines = await sync_to_async(lambda: list(Coordination.objects.get(key=KEY).trace_lines()))()
    assert verify_trace(lines).ok


@pytest.mark.e2e
@socket_test
def test_with_redis_unreachable_a_stored_frame_is_acked_and_a_decision_reported(
    agents, operators, tmp_path
):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = start_daphne(tmp_path, {"REDIS_URL": closed})
    try:
        escalation = seed(agents)
        request = urllib.request.Request(
            f"{server.http}/api/v1/frames", data=json.dumps(frame("r-down")).encode(),
            headers={"Authorization": f"Bearer {agents.triage_token}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            (ack,) = json.loads(response.read())["frames"]
        assert ack["type"] == "ack" and Frame.objects.filter(ltp_id="r-down").exists()

        alice = Operator(server.http, User.objects.get(username="alice"))
        reply = alice.post(
            f"/escalations/{escalation.pk}/decide/",
            {"verdict": "approve", "note": "go ahead"}, htmx=True,
        )  # fmt: skip
        assert reply.status == 200, reply.body
        assert Escalation.objects.get(pk=escalation.pk).status == "approved"
        assert "Approved" in reply.body or "approved" in reply.body
    finally:
        stop_daphne(server)


@pytest.mark.e2e
@socket_test
async def test_with_redis_unreachable_the_agent_socket_still_acknowledges(agents, tmp_path):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = await sync_to_async(start_daphne)(tmp_path, {"REDIS_URL": closed})
    try:
        async with LtpClient(
            server.agent_url, agents.metrics_token, "metrics-agent",
            coordination_id=KEY, reconnect=False,
        ) as metrics:  # fmt: skip
            acks = await metrics.send(SEED_RESPONSE)
            assert acks and all(a["type"] == "ack" for a in acks)
    finally:
        await sync_to_async(stop_daphne)(server)
