"""Group commit (coordination.batching, ingest.ingest_batch): several sockets' frames are stored
in one transaction, each frame still refused or acknowledged on its own, nothing answered before
the COMMIT, and a batch that fails on the server's side is stored again frame by frame.

The database faults are real: a trigger makes the database refuse one frame's insert.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordination.ingest import Work, ingest, ingest_batch
from coordination.models import Agent, Coordination, Frame, Orientation, Presence
from coordination.trace import verify_trace
from tests.factories import (
    FLEET,
    agent_client,
    frame,
    live_connection,
    start_daphne,
    stop_daphne,
)

POISON = {
    "sqlite": [
        """CREATE TRIGGER test_poison BEFORE INSERT ON coordination_frame
           WHEN NEW.ltp_id = 'poison' BEGIN SELECT RAISE(ABORT, 'disk full'); END""",
    ],
    "postgresql": [
        """CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger AS $$
           BEGIN IF NEW.ltp_id = 'poison' THEN
               RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full';
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER test_poison BEFORE INSERT ON coordination_frame
           FOR EACH ROW EXECUTE FUNCTION test_poison()""",
    ],
}


def orientation(frame_id: str, key: str, intent: str = "watch") -> dict:
    return frame(frame_id, "orientation", {"intent": intent}, coordination_id=key)


def fleet(count: int, scope: str = FLEET) -> list[Agent]:
    return [Agent.create_with_token(f"gc-{i}", scope=scope)[0] for i in range(count)]


def chain_of(key: str) -> list[tuple[int, str]]:
    return list(
        Frame.objects.filter(coordination__key=key).order_by("seq").values_list("seq", "ltp_id")
    )


@pytest.mark.django_db(transaction=True)
def test_a_batch_answers_each_sockets_frames_in_order_and_keeps_one_chain():
    agents = fleet(3)
    batch = [
        Work(agent, [orientation(f"{agent.name}-{n}", "shared") for n in range(2)], "s")
        for agent in agents
    ]
    results = ingest_batch(batch)
    assert [[o.frame_id for o in r] for r in results] == [
        [f"{a.name}-0", f"{a.name}-1"] for a in agents
    ]
    assert all(o.error is None and not o.duplicate for r in results for o in r)
    # One chain, gapless, in the order the batch held the frames; it verifies.
    assert chain_of("shared") == [(seq, f"{agents[seq // 2].name}-{seq % 2}") for seq in range(6)]
    assert verify_trace(Coordination.objects.get(key="shared").trace_lines()).ok
    # Each agent's orientation in force is its last one, and points at that frame.
    for agent in agents:
        held = Orientation.objects.get(agent=agent, coordination__key="shared")
        assert held.frame.ltp_id == f"{agent.name}-1"
        assert held.frame.orientation_id == held.frame.pk


@pytest.mark.django_db(transaction=True)
def test_a_refused_frame_in_a_batch_rolls_back_alone():
    insider, outsider = fleet(1)[0], Agent.create_with_token("gc-outsider", scope="other-*")[0]
    ingest(insider, [orientation("open", "closed-room")])
    results = ingest_batch(
        [
            Work(insider, [orientation("in-1", "closed-room")], "s"),
            Work(outsider, [orientation("out-1", "closed-room")], "s"),
            Work(insider, [orientation("in-2", "closed-room")], "s"),
        ]
    )
    assert [o.error.code if o.error else "ack" for r in results for o in r] == [
        "ack",
        "not_a_participant",
        "ack",
    ]
    assert chain_of("closed-room") == [(0, "open"), (1, "in-1"), (2, "in-2")]
    assert not Frame.objects.filter(ltp_id="out-1").exists()


@pytest.mark.django_db(transaction=True)
def test_a_batch_with_a_storage_fault_is_stored_again_frame_by_frame():
    agents = fleet(3)
    with connection.cursor() as cursor:
        for sql in POISON[connection.vendor]:
            cursor.execute(sql)
    results = ingest_batch(
        [
            Work(agents[0], [orientation("a-1", "faulty")], "s"),
            Work(agents[1], [orientation("poison", "faulty")], "s"),
            Work(agents[2], [orientation("c-1", "faulty")], "s"),
        ]
    )
    assert [o.error.code if o.error else "ack" for r in results for o in r] == [
        "ack",
        "storage_failed",
        "ack",
    ]
    # Stored once each, gapless: nothing of the first attempt survived its rollback.
    assert chain_of("faulty") == [(0, "a-1"), (1, "c-1")]
    assert [o.seq for r in results for o in r if o.error is None] == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_a_batch_takes_fewer_statements_than_the_same_frames_one_by_one():
    agents = fleet(8)
    for agent in agents:  # each agent has opened its coordination and oriented once
        ingest(agent, [orientation(f"{agent.name}-0", f"room-{agent.name}")])
    with CaptureQueriesContext(connection) as batched:
        ingest_batch([Work(a, [orientation(f"{a.name}-1", f"room-{a.name}")], "s") for a in agents])
    with CaptureQueriesContext(connection) as alone:
        for agent in agents:
            ingest(agent, [orientation(f"{agent.name}-2", f"room-{agent.name}")])
    # A socket's lone frame (nothing else waiting): a batch of one.
    with CaptureQueriesContext(connection) as lone:
        ingest_batch(
            [
                Work(
                    agents[0],
                    [orientation(f"{agents[0].name}-lone", f"room-{agents[0].name}")],
                    "s",
                )
            ]
        )
    # Four frames from each agent: its rows are locked and written once for the four.
    with CaptureQueriesContext(connection) as fours:
        ingest_batch(
            [
                Work(a, [orientation(f"{a.name}-{n}", f"room-{a.name}")], "s")
                for n in range(3, 7)
                for a in agents
            ]
        )
    assert len(batched) < len(alone)
    assert len(fours) / (4 * len(agents)) < len(batched) / len(agents)
    transactions = [q for q in alone if q["sql"].upper().startswith(("BEGIN", "COMMIT"))]
    assert len([q for q in batched if q["sql"].upper().startswith("COMMIT")]) <= 1
    print(
        f"statements per orientation frame: {len(alone) / len(agents):.1f} alone "
        f"({len(transactions)} BEGIN/COMMIT for {len(agents)}), {len(lone)} a socket's lone frame, "
        f"{len(batched) / len(agents):.1f} in a batch of {len(agents)} agents x 1, "
        f"{len(fours) / (4 * len(agents)):.1f} in a batch of {len(agents)} agents x 4"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lanes", [1, 3])
def test_many_sockets_at_once_every_acked_frame_is_in_a_gapless_verifying_chain(tmp_path, lanes):
    made = [Agent.create_with_token(f"gc-{i}", scope=FLEET) for i in range(8)]
    agents = {agent.name: token for agent, token in made}
    env = {"LTPDASH_RATE_LIMIT": "100000", "LTPDASH_INGEST_LANES": str(lanes)}
    server = start_daphne(tmp_path, env)
    try:
        acked = asyncio.run(_send_at_once(server, agents, per_agent=40))
    finally:
        stop_daphne(server)
    assert len(acked) == 8 * 40
    for key in ("busy-a", "busy-b"):
        chain = chain_of(key)
        assert [seq for seq, _ in chain] == list(range(len(chain)))
        assert verify_trace(Coordination.objects.get(key=key).trace_lines()).ok
    # Every acknowledged frame is in a chain, once; besides them only the clients' hellos
    # (and what ltpdash itself wrote there: presence).
    stored = Frame.objects.filter(coordination__key__in=["busy-a", "busy-b"], direction="in")
    assert sorted(stored.exclude(type="hello").values_list("ltp_id", flat=True)) == sorted(acked)


async def _send_at_once(server, tokens: dict[str, str], per_agent: int) -> list[str]:
    async def one_agent(index: int, name: str, token: str) -> list[str]:
        key = "busy-a" if index % 2 else "busy-b"
        async with agent_client(server, token, name, coordination_id=key) as client:
            replies = await asyncio.gather(
                *(client.send(orientation(f"{name}-{n}", key)) for n in range(per_agent))
            )
        return [r["payload"]["frame_id"] for [r] in replies if r["type"] == "ack"]

    done = await asyncio.gather(
        *(one_agent(i, name, token) for i, (name, token) in enumerate(tokens.items()))
    )
    return [frame_id for acked in done for frame_id in acked]


def _mixed(prefix: str, key: str) -> list[list[dict]]:
    """Frames from two agents into one coordination, as several sockets' messages: plain
    orientations the batch keeps in memory, and frames whose effects read the database
    between them (a request, a snapshot, a seed bundle), with ts going forward and back."""

    def at(n: int, data: dict) -> dict:
        return {**data, "ts": 1900000000000 + n}  # after now: the bundle (no ts) is older

    return [
        [at(5, orientation(f"{prefix}o1", key, "first"))],
        [
            at(3, orientation(f"{prefix}o2", key, "second")),
            at(7, frame(f"{prefix}u1", "brand_new", {}, coordination_id=key)),
        ],
        [at(8, frame(f"{prefix}r1", "route_request", {"need": "x"}, coordination_id=key))],
        [at(9, orientation(f"{prefix}o3", key, "third"))],
        [at(10, frame(f"{prefix}s1", "focus_snapshot", {"state": "s"}, coordination_id=key))],
        [
            {
                "id": f"{prefix}b",
                "coordination_id": key,
                "orientation": {"intent": "fourth"},
                "route_request": {"need": "y"},
            }
        ],
    ]


def _stored(key: str, prefix: str) -> dict:
    coordination = Coordination.objects.get(key=key)
    frames = Frame.objects.filter(coordination=coordination, direction="in").order_by("seq")
    return {
        "chain": [
            (
                f.seq,
                f.sender[-1],
                f.ltp_id.removeprefix(prefix),
                f.type,
                f.orientation.ltp_id.removeprefix(prefix) if f.orientation else None,
            )
            for f in frames
        ],
        "head": coordination.head_seq == frames.last().seq
        and coordination.head_hash
        == Coordination.objects.get(key=key).frames.order_by("seq").last().hash,
        "orientations": sorted(
            (o.agent.name[-1], o.intent, o.frame.ltp_id.removeprefix(prefix))
            for o in Orientation.objects.filter(coordination=coordination)
        ),
        "verifies": verify_trace(coordination.trace_lines()).ok,
    }


@pytest.mark.django_db(transaction=True)
def test_a_mixed_batch_leaves_what_the_same_frames_leave_one_by_one():
    # Two pairs of agents; the pair in a batch and the pair frame by frame send the same.
    batched = [Agent.create_with_token(f"batch-{n}", scope=FLEET)[0] for n in "ab"]
    alone = [Agent.create_with_token(f"alone-{n}", scope=FLEET)[0] for n in "ab"]
    messages = {side[0].pk: _mixed("", f"room-{side[0].name}") for side in (batched, alone)}
    works = [
        Work(agents[step % 2], [dict(f) for f in messages[agents[0].pk][step]], "s")
        for agents in (batched,)
        for step in range(len(messages[agents[0].pk]))
    ]
    results = ingest_batch(works)
    for step, items in enumerate(messages[alone[0].pk]):
        ingest(alone[step % 2], items, "s")

    assert [o.error for r in results for o in r if o.error] == []
    assert _stored("room-batch-a", "") == _stored("room-alone-a", "")
    assert _stored("room-batch-a", "")["verifies"]
    for one, other in zip(batched, alone, strict=True):
        one.refresh_from_db(), other.refresh_from_db()
        assert (one.last_ts_ms, one.current_coordination.key.replace("batch", "alone")) == (
            other.last_ts_ms,
            other.current_coordination.key,
        )


@pytest.mark.django_db(transaction=True)
def test_a_silent_agent_speaking_again_in_a_batch_gets_its_presence_frame_in_the_chain():
    # Its presence change appends a frame to the coordination the batch holds: the two
    # collide on the chain's (coordination, seq), and the batch is stored frame by frame.
    quiet, other = fleet(2)
    ingest(quiet, [orientation("q-0", "room")])
    ingest(other, [orientation("o-0", "room")])
    live_connection(quiet)  # connected, silent: a frame brings it back online
    Agent.objects.filter(pk=quiet.pk).update(
        presence=Presence.SILENT, last_seen=timezone.now() - timedelta(minutes=5)
    )
    quiet.refresh_from_db()
    results = ingest_batch(
        [
            Work(other, [orientation("o-1", "room")], "s"),
            Work(quiet, [orientation("q-1", "room")], "s"),
            Work(other, [orientation("o-2", "room")], "s"),
        ]
    )
    assert [o.error for r in results for o in r if o.error] == []
    chain = chain_of("room")
    assert [seq for seq, _ in chain] == list(range(len(chain)))
    assert [ltp_id for _, ltp_id in chain if not ltp_id.startswith("ltpdash")] == [
        "q-0",
        "o-0",
        "o-1",
        "q-1",
        "o-2",
    ]
    assert Frame.objects.filter(coordination__key="room", type="presence").count() == 1
    assert verify_trace(Coordination.objects.get(key="room").trace_lines()).ok
    assert Agent.objects.get(pk=quiet.pk).presence == Presence.ONLINE


@pytest.mark.django_db
def test_a_batch_hints_each_coordination_it_moved_once(django_capture_on_commit_callbacks):
    # Pages are woken per chain that moved, not per frame: 12 frames to 2 coordinations
    # register a hint for each coordination and one for the dashboard each, where every
    # frame registered two.
    agents = fleet(2)

    def batch(round_: int) -> list[Work]:
        return [
            Work(
                agent,
                [orientation(f"{agent.name}-{round_}-{n}", agent.name) for n in range(6)],
                "s",
            )
            for agent in agents
        ]

    ingest_batch(batch(0))  # the coordinations exist (opening one is news of its own)
    with django_capture_on_commit_callbacks() as callbacks:
        outcomes = ingest_batch(batch(1))
    assert all(o.error is None for done in outcomes for o in done)
    assert len(callbacks) == 4
