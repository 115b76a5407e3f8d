"""What one frame costs the live pages watching it: the blocks it changes are drawn once for
every operator and the others not at all; who has spoken and the latest snapshot come from a
digest of the chain kept as it grows, not from reading the chain again; the renders woken
together go to a thread together, each caller getting its own result."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from coordination import agent_cards, decisions, events, fingerprints, present, sharing, timeline
from coordination.ingest import ingest
from coordination.models import Agent, Coordination
from tests.factories import frame, seed, send, ui_socket, until_message
from tests.seed import KEY

pytestmark = pytest.mark.django_db(transaction=True)


def _snapshot(n: int) -> dict:
    return frame(f"snap-{n}", "focus_snapshot", {"state": f"state {n}"})


def test_the_chain_digest_kept_between_reads_agrees_with_reading_the_whole_chain(agents, operators):
    seed(agents)
    coordination = Coordination.objects.get(key=KEY)
    first = timeline.digest(coordination.pk)
    assert set(first.agents) == {a.pk for a in decisions.agents_in(coordination)}
    snapshot = timeline.agents_snapshot(coordination)
    assert first.snapshot == (snapshot.seq if snapshot else None)

    send(agents.metrics, _snapshot(1))
    alice = operators["alice"]
    decisions.handoff(coordination.pk, alice, alice)  # taking over: a human's snapshot
    with CaptureQueriesContext(connection) as queries:
        now = timeline.digest(coordination.pk)
    assert len(queries) == 1  # the frames after the kept seq, whatever the chain's length
    coordination.refresh_from_db()
    assert now.seq == coordination.head_seq
    assert set(now.agents) == {a.pk for a in decisions.agents_in(coordination)}
    # The hand-off's snapshot is a human's: the agents' latest is still the metrics agent's.
    latest = timeline.agents_snapshot(coordination)
    assert latest is not None and latest.sender == agents.metrics.name
    assert now.snapshot == latest.seq


def test_the_agents_block_drawn_from_kept_cards_is_the_one_the_page_renders(agents):
    seed(agents)
    send(agents.metrics, frame("o-2", "orientation", {"role": "m", "guardrails": ["a <b>"]}))
    coordination = Coordination.objects.get(key=KEY)
    digest = timeline.digest(coordination.pk)
    template = "coordination/coordination_detail.html#agents"
    page = render_to_string(
        template, {"agent_cards": present.agent_cards(coordination), "oob": True}
    )
    for _ in range(2):  # drawn, then taken as kept
        live = agent_cards.block(agent_cards.drawn(coordination.pk, digest.agents))
        assert " ".join(live.split()) == " ".join(page.split())
    assert "a &lt;b&gt;" in page


def test_each_part_of_a_coordinations_fingerprint_changes_with_what_it_sums_up(agents, operators):
    escalation = seed(agents)
    pk = escalation.coordination_id
    before = fingerprints.coordination(pk)
    send(agents.metrics, frame("o-2", "orientation", {"role": "metrics", "intent": "watch"}))
    oriented = fingerprints.coordination(pk)
    changed = {part for part in before if before[part] != oriented[part]}
    assert changed == {"chain", "orientations"}
    decisions.decide(escalation.pk, operators["alice"], decisions.APPROVE, "ok")
    decided = fingerprints.coordination(pk)
    assert decided["escalations"] != oriented["escalations"]
    assert decided["pending"] != oriented["pending"]
    assert fingerprints.escalations()["pending"] == decided["pending"]


async def test_a_frame_redraws_only_the_blocks_it_changes_once_for_every_operator(
    agents, operators
):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"
    viewers = []
    for name in ("vic", "alice", "bob"):
        communicator, connected = await ui_socket(path, operators[name])
        assert connected
        await until_message(communicator, 'id="coordination-summary"')
        viewers.append(communicator)
    try:
        for n in (1, 2):  # the first settles the sender's presence
            sharing.SHARED.clear()
            async with events.acollecting():
                await sync_to_async(ingest)(agents.metrics, _snapshot(n))
            messages = [await until_message(v, f"state {n}") for v in viewers]
        # The snapshot changed the summary (its state, its chain): drawn once for the three
        # operators; their ownership blocks, the agents and the requests were not redrawn.
        assert sharing.SHARED.computed["block"] == 1
        for message in messages:
            assert 'id="coordination-summary"' in message
            assert 'id="ownership"' not in message and 'id="agent-cards"' not in message
    finally:
        for viewer in viewers:
            await viewer.disconnect()


async def test_an_orientation_sends_its_agents_card_alone_and_a_newcomer_the_whole_block(
    agents, operators
):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"
    viewer, connected = await ui_socket(path, operators["vic"])
    assert connected
    await until_message(viewer, 'id="agent-cards"')  # on connect: the whole block
    intent = {"role": "metrics", "intent": "watch <disk>"}
    try:
        async with events.acollecting():
            await sync_to_async(send)(agents.metrics, frame("o-9", "orientation", intent))
        message = await until_message(viewer, 'id="agent-card-')
        # The sender's card, a swap of its own; not the block, not the other agent's card.
        assert f'id="agent-card-{agents.metrics.pk}" hx-swap-oob="true"' in message
        assert "watch &lt;disk&gt;" in message
        assert 'id="agent-cards"' not in message
        assert f'id="agent-card-{agents.triage.pk}"' not in message

        newcomer = (await sync_to_async(Agent.create_with_token)("a-newcomer", scope="*"))[0]
        joining = frame("o-10", "orientation", {"role": "x", "intent": "joining"})
        async with events.acollecting():
            await sync_to_async(send)(newcomer, joining)
        message = await until_message(viewer, "joining")
        # A card more: the whole block, in order, none of its cards a swap of its own (htmx
        # would take such a card out of the block).
        start = message.index('<section id="agent-cards"')
        block = message[start : message.index("</section>", start)]
        assert block.count("hx-swap-oob") == 1
        cards = [newcomer.pk, agents.metrics.pk, agents.triage.pk]  # by name
        assert [block.index(f'id="agent-card-{pk}"') for pk in cards] == sorted(
            block.index(f'id="agent-card-{pk}"') for pk in cards
        )
    finally:
        await viewer.disconnect()


async def test_renders_asked_for_together_each_get_their_own_result_and_failures_stay_theirs():
    def render(n: int):
        def run(asked: int) -> tuple[int, int]:
            if n == 3:
                raise ValueError("this page cannot render")
            return n, asked

        return run

    asked = sharing.tick()
    results = await asyncio.gather(
        *(sharing.rendered(render(n), asked + n) for n in range(6)), return_exceptions=True
    )
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [(n, asked + n) for n in (0, 1, 2, 4, 5)]
