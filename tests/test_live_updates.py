"""Live pages follow events with no timer in between: an event renders at once, what comes
during a render makes one more, viewers woken together share the work, and every viewer shows
every frame once, in order, even at saturation against a real daphne."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer

from coordination import consumers, events, sharing
from coordination.ingest import ingest
from coordination.models import Coordination, Frame
from tests.factories import frame, seed, session_cookie, ui_socket, until_message
from tests.seed import KEY

pytestmark = pytest.mark.django_db(transaction=True)

ROW = re.compile(r'<li id="frame-(\d+)"')


@pytest.fixture
def no_slow_check(monkeypatch):
    """The safety-net database check far away: only events can wake a page."""
    monkeypatch.setattr(consumers, "LIVE_CHECK_SECONDS", 3600)


async def _page(path: str, user, first: str):
    """A console socket at `path` whose first render (containing `first`) has arrived."""
    communicator, connected = await ui_socket(path, user)
    assert connected
    await until_message(communicator, first)
    return communicator


async def _published(agent, data) -> None:
    async with events.acollecting():
        await sync_to_async(ingest)(agent, data)


def _orientation(n: int) -> dict:
    return frame(f"o-{n}", "orientation", {"role": "triage", "intent": f"step {n}"})


async def test_an_escalation_reaches_an_open_inbox_on_its_one_event(
    agents, operators, no_slow_check
):
    """With the slow check out of the way, the escalation's one event is what brings the
    card: nothing waits for a timer after it."""
    inbox = await _page("/ws/ui/escalations/?shown=", operators["bob"], 'id="inbox-count"')
    try:
        async with events.acollecting():  # one dashboard event for all that seed() commits
            escalation = await sync_to_async(seed)(agents)
        card = await until_message(inbox, f'id="escalation-{escalation.pk}"')
        assert 'hx-swap-oob="beforeend:#inbox-list"' in card
    finally:
        await inbox.disconnect()


async def test_a_frame_wakes_this_processs_pages_directly_on_the_in_memory_layer(
    agents, operators, no_slow_check
):
    """The embedded default's layer is the process's own: a hint wakes the pages listening
    here without a message per page through it. Redis (several processes) carries it."""
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"
    viewer = await _page(path, operators["vic"], 'id="coordination-summary"')
    layer = get_channel_layer()
    sent_through_layer: list[str] = []
    group_send = layer.group_send

    async def counted(group, message):  # the layer's own send, counted
        sent_through_layer.append(group)
        await group_send(group, message)

    layer.group_send = counted
    try:
        async with events.acollecting():
            await sync_to_async(ingest)(agents.triage, _orientation(1))
        await until_message(viewer, "afterbegin:#timeline-rows")
        group = events.coordination_group(coordination.pk)
        in_process = isinstance(layer, InMemoryChannelLayer)
        assert (group in sent_through_layer) is not in_process
    finally:
        layer.group_send = group_send
        await viewer.disconnect()
    assert group not in events._wakes  # the page stopped listening when it left


async def test_a_burst_of_events_makes_fewer_renders_and_messages_than_events(
    agents, operators, no_slow_check
):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"
    viewer = await _page(path, operators["vic"], 'id="coordination-summary"')
    try:
        burst = 20
        async with events.acollecting():
            for n in range(burst):
                await sync_to_async(ingest)(agents.triage, _orientation(n))
        sharing.SHARED.clear()
        layer = get_channel_layer()
        group = events.coordination_group(coordination.pk)
        for _ in range(burst):  # and a burst of events on top of the one above
            await layer.group_send(group, {"type": "coordination.changed", "seq": None})
        rows: list[int] = []
        messages = 0
        while len(rows) < burst:
            message = await until_message(viewer, "afterbegin:#timeline-rows")
            messages += 1
            rows.extend(int(n) for n in reversed(ROW.findall(message)))
        first = coordination.head_seq + 1
        assert rows == list(range(first, first + burst))
        assert await viewer.receive_nothing(timeout=0.5)
        assert messages < burst
        # One viewer, so each render read the page's fingerprint and rows once.
        assert sharing.SHARED.computed["read"] < burst
    finally:
        await viewer.disconnect()


async def test_viewers_woken_by_one_event_share_the_work_and_each_get_the_row(
    agents, operators, no_slow_check
):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"
    viewers = [await _page(path, operators["vic"], 'id="coordination-summary"') for _ in range(5)]
    try:
        sharing.SHARED.clear()
        await _published(agents.triage, _orientation(1))
        for viewer in viewers:
            message = await until_message(viewer, "afterbegin:#timeline-rows")
            assert f'id="frame-{coordination.head_seq + 1}"' in message
        # Each viewer was woken before the first render started, so one computation served
        # several of them (the layer delivers to each channel in turn; on Redis a late one
        # may compute again, never all five).
        assert sharing.SHARED.computed["read"] < len(viewers)
        assert sharing.SHARED.computed["blocks"] < len(viewers)
    finally:
        for viewer in viewers:
            await viewer.disconnect()


def test_a_computation_started_before_a_viewer_was_woken_is_not_shared_with_it():
    shared = sharing.Shared()
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    asked = sharing.tick()
    assert shared.get(("k",), asked, compute) == 1
    assert shared.get(("k",), asked, compute) == 1  # started after `asked`: shared
    woken = sharing.tick()
    assert shared.get(("k",), woken, compute) == 2  # started before: computed again


def test_a_viewer_may_keep_to_a_read_no_older_than_what_it_shows_and_is_told_it_is_stale():
    shared = sharing.Shared()
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    value, fresh, read_at = shared.latest(("k",), sharing.tick(), None, compute)
    assert (value, fresh) == (1, True)
    other, _, _ = shared.latest(("k",), sharing.tick(), None, compute)  # another viewer
    assert other == 2
    # Woken after that read started, but it is newer than what this viewer shows: taken,
    # marked stale (the viewer renders again), and not computed once more.
    value, fresh, _ = shared.latest(("k",), sharing.tick(), read_at, compute)
    assert (value, fresh, len(calls)) == (2, False, 2)


async def _viewer(live_server, user, path: str) -> websockets.ClientConnection:
    cookie = await sync_to_async(session_cookie)(user)
    headers = {"Cookie": f"sessionid={cookie}", "Origin": live_server.http}
    return await websockets.connect(live_server.ws + path, additional_headers=headers)


async def _collect(socket, shown: list[int], messages: list[str]) -> None:
    """Timeline row seqs as shown (oldest first), read as they come so the socket keeps
    answering pings."""
    while True:
        message = await socket.recv()
        found = [int(n) for n in ROW.findall(message)]
        if found:
            messages.append(message)
            shown.extend(reversed(found))


async def _until_shown(shown: list[int], wanted: set[int], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not wanted <= set(shown):
        assert loop.time() < deadline, f"{len(wanted - set(shown))} frames never shown"
        await asyncio.sleep(0.05)


@pytest.mark.e2e
async def test_at_saturation_every_viewer_shows_every_frame_once_in_order(live, agents, operators):
    """Two agents pour frames into one coordination through their sockets as fast as the
    server takes them; four operators watch its page on the real server."""
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    head = coordination.head_seq
    path = f"/ws/ui/coordinations/{coordination.pk}/?seq={head}"
    users = [operators[name] for name in ("vic", "alice", "bob", "ada")]
    viewers = [await _viewer(live, user, path) for user in users]
    for viewer in viewers:
        await asyncio.wait_for(viewer.recv(), 10)  # the first render
    per_agent = 150
    shown: list[list[int]] = [[] for _ in viewers]
    messages: list[list[str]] = [[] for _ in viewers]
    readers = [
        asyncio.create_task(_collect(viewer, shown[i], messages[i]))
        for i, viewer in enumerate(viewers)
    ]
    tokens = [agents.triage_token, agents.metrics_token]
    senders = [
        await websockets.connect(
            live.agent_url, additional_headers={"Authorization": f"Bearer {t}"}
        )
        for t in tokens
    ]
    try:
        for i, sender in enumerate(senders):
            frames = [
                frame(f"s{i}-{n}", "orientation", {"intent": f"{n}"}) for n in range(per_agent)
            ]
            await sender.send(json.dumps(frames))
        for sender in senders:
            acks = 0
            while acks < per_agent:
                reply = json.loads(await asyncio.wait_for(sender.recv(), 30))
                replies = reply if isinstance(reply, list) else [reply]
                acks += sum(1 for r in replies if r.get("type") == "ack")
        stored = Frame.objects.filter(coordination=coordination, seq__gt=head, type="orientation")
        wanted = set(await sync_to_async(list)(stored.values_list("seq", flat=True)))
        assert len(wanted) == 2 * per_agent
        for i in range(len(viewers)):
            await _until_shown(shown[i], wanted)
            assert shown[i] == sorted(set(shown[i])), "each row once, in order"
            assert len(messages[i]) < len(wanted)
    finally:
        for reader in readers:
            reader.cancel()
        for socket in [*senders, *viewers]:
            await socket.close()
