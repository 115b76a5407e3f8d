"""Acknowledged means stored: when the database refuses the write there is no ack, nothing is
kept, and the same frame sent again later is stored once and acknowledged as new.

The failure is real: a trigger makes the database itself refuse every insert into the chain
table, the way a full disk or a lost connection would surface to the ingest transaction.
"""

from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from coordination.models import Coordination, Frame, Orientation
from tests.factories import agent_socket, frame, post_frames

FAIL_INSERTS = {
    "sqlite": [
        """CREATE TRIGGER test_frame_insert_fails BEFORE INSERT ON coordination_frame
           BEGIN SELECT RAISE(ABORT, 'disk full'); END""",
    ],
    "postgresql": [
        """CREATE OR REPLACE FUNCTION test_frame_insert_fails() RETURNS trigger AS $$
           BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END
           $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER test_frame_insert_fails BEFORE INSERT ON coordination_frame
           FOR EACH ROW EXECUTE FUNCTION test_frame_insert_fails()""",
    ],
}
HEAL = {
    "sqlite": ["DROP TRIGGER IF EXISTS test_frame_insert_fails"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS test_frame_insert_fails ON coordination_frame",
        "DROP FUNCTION IF EXISTS test_frame_insert_fails()",
    ],
}


def _run(statements):
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def break_frame_storage():
    _run(FAIL_INSERTS[connection.vendor])


def heal_frame_storage():
    _run(HEAL[connection.vendor])


@contextmanager
def frame_storage_broken():
    break_frame_storage()
    try:
        yield
    finally:
        heal_frame_storage()


def orientation(frame_id="o-1"):
    payload = {"role": "triage-agent", "intent": "diagnose backlog"}
    return frame(frame_id, "orientation", payload, coordination_id="incident-disk")


def _stored(frame_id):
    return Frame.objects.filter(sender="triage-agent", ltp_id=frame_id).count()


def _anything_kept():
    return (
        Frame.objects.exists()
        or Coordination.objects.filter(key="incident-disk").exists()
        or Orientation.objects.exists()
    )


@pytest.mark.django_db(transaction=True)
async def test_socket_frame_is_not_acked_when_the_write_fails_and_its_retry_is(agents):
    socket = agent_socket(agents.triage_token)
    connected, _ = await socket.connect()
    assert connected
    try:
        await sync_to_async(break_frame_storage)()
        try:
            await socket.send_json_to(orientation())
            reply = await socket.receive_json_from()
            assert reply["type"] == "error"
            assert reply["payload"]["code"] == "storage_failed"
            assert reply["payload"]["frame_id"] == "o-1"
            assert await socket.receive_nothing(0.2)  # no ack follows the error
            assert not await sync_to_async(_anything_kept)()
        finally:
            await sync_to_async(heal_frame_storage)()

        await socket.send_json_to(orientation())
        ack = await socket.receive_json_from()
        assert ack["type"] == "ack"
        assert ack["payload"]["frame_id"] == "o-1"
        assert ack["payload"]["duplicate"] is False
        assert ack["payload"]["seq"] == 0
        assert await sync_to_async(_stored)("o-1") == 1
        assert await sync_to_async(Orientation.objects.count)() == 1
    finally:
        await socket.disconnect()


def test_http_frame_is_not_acked_when_the_write_fails_and_its_retry_is(client, agents):
    body = orientation("o-http")

    with frame_storage_broken():
        response = post_frames(client, agents.triage_token, body)
        # A server-side failure: the agent should retry, not treat its frame as bad.
        assert response.status_code == 503
        [reply] = response.json()["frames"]
        assert reply["type"] == "error"
        assert reply["payload"]["code"] == "storage_failed"
        assert not _anything_kept()

    response = post_frames(client, agents.triage_token, body)
    assert response.status_code == 200
    [ack] = response.json()["frames"]
    assert ack["type"] == "ack"
    assert ack["payload"]["duplicate"] is False
    assert _stored("o-http") == 1
