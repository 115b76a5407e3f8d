"""An agent socket reads ahead (coordination.readahead): frames an agent sends without waiting
for their acks are queued together (so they share group-commit batches), yet each socket's
frames are stored in the order sent and every reply comes back in that order, errors
included; a socket keeps at most READ_AHEAD replies owed."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from coordination import batching
from coordination.models import Frame
from coordination.readahead import READ_AHEAD, ReadAhead
from tests.factories import agent_connection, frame

socket_test = pytest.mark.django_db(transaction=True)
KEY = "read-ahead"


def orientation(frame_id: str) -> str:
    return json.dumps(frame(frame_id, "orientation", {"intent": "watch"}, coordination_id=KEY))


@socket_test
async def test_frames_sent_without_waiting_are_stored_and_answered_in_the_order_sent(agents):
    sent: list[str] = []
    expected: list[str] = []  # per reply: the frame it answers, or the error's code
    for n in range(40):
        if n == 10:
            sent.append("{not json")
            expected.append("malformed_json")
        elif n == 20:  # a list of two: it runs after what is in flight, then the rest follow
            pair = [json.loads(orientation("pair-a")), json.loads(orientation("pair-b"))]
            sent.append(json.dumps(pair))
            expected += ["pair-a", "pair-b"]
        elif n == 30:  # a frame ltpdash refuses (no type): its error keeps its place
            sent.append(json.dumps({"v": "0.1", "id": "untyped", "payload": {}}))
            expected.append("untyped")
        else:
            sent.append(orientation(f"f{n:02d}"))
            expected.append(f"f{n:02d}")

    async with agent_connection(agents.triage_token) as socket:
        for text in sent:  # nothing awaited in between: the socket reads ahead
            await socket.send_to(text_data=text)
        replies = [await socket.receive_json_from(timeout=10) for _ in expected]

    answered = [
        r["payload"]["frame_id"] if "frame_id" in r["payload"] else r["payload"]["code"]
        for r in replies
    ]
    assert answered == expected
    assert [r["type"] for r in replies].count("error") == 2
    acked = [r["payload"]["frame_id"] for r in replies if r["type"] == "ack"]
    chain = await sync_to_async(
        lambda: list(
            Frame.objects.filter(coordination__key=KEY, sender="triage-agent")
            .order_by("seq")
            .values_list("ltp_id", flat=True)
        )
    )()
    assert chain == acked  # stored in the order sent
    assert [r["payload"]["seq"] for r in replies if r["type"] == "ack"] == sorted(
        r["payload"]["seq"] for r in replies if r["type"] == "ack"
    )


async def test_a_socket_keeps_at_most_read_ahead_replies_owed():
    ahead = ReadAhead()
    release = asyncio.Event()
    answered: list[int] = []

    def reply(n: int):
        async def run() -> None:
            await release.wait()
            answered.append(n)

        return run

    for n in range(READ_AHEAD):
        ahead.then(reply(n))
    waiting = asyncio.create_task(ahead.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # full: the next message is not read

    release.set()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(ahead.drained(), 5)
    assert answered == list(range(READ_AHEAD))  # in the order they were owed


@socket_test
async def test_frames_for_different_lanes_wait_for_each_other(agents, settings):
    # Two lanes (PostgreSQL's way; SQLite takes them in turn): a frame naming its
    # coordination goes to that coordination's lane, one naming none to its agent's lane.
    # The second frame names none: it belongs where the first one put the agent, so it must
    # not be stored before the first, though it is sent without waiting.
    settings.LTP_INGEST_LANES = 2
    first = json.loads(orientation("named"))
    first["coordination_id"] = "lane-d"  # lane 0
    second = frame("unnamed", "orientation", {"intent": "still watching"}, coordination_id=None)
    lanes = [batching._lane_of(agents.triage, [f], 2) for f in (first, second)]
    if lanes[0] == lanes[1]:
        first["coordination_id"] = "lane-a"  # lane 1: the agent's pk chose lane 0
    async with agent_connection(agents.triage_token) as socket:
        await socket.send_json_to(first)
        await socket.send_json_to(second)
        replies = [await socket.receive_json_from(timeout=10) for _ in range(2)]
    assert [r["payload"]["frame_id"] for r in replies] == ["named", "unnamed"]
    keys = await sync_to_async(
        lambda: list(
            Frame.objects.filter(ltp_id__in=["named", "unnamed"])
            .order_by("ltp_id")
            .values_list("ltp_id", "coordination__key", "seq")
        )
    )()
    assert keys == [
        ("named", first["coordination_id"], 0),
        ("unnamed", first["coordination_id"], 1),
    ]
