"""The console's live sockets, through the real ASGI router (session + Origin check)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from coordination import decisions, events
from coordination.ingest import ingest
from coordination.models import Coordination, Escalation
from tests.factories import seed, send, ui_socket, until_message
from tests.seed import KEY

pytestmark = pytest.mark.django_db(transaction=True)


def _viewer_path(coordination: Coordination) -> str:
    """The coordination page's socket, for a page rendered at the chain's head."""
    return f"/ws/ui/coordinations/{coordination.pk}/?seq={coordination.head_seq}"


@asynccontextmanager
async def _admitted(path: str, user) -> AsyncIterator[WebsocketCommunicator]:
    """The console socket at `path`, admitted for `user`; disconnected after the block."""
    communicator, connected = await ui_socket(path, user)
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def _published(agent, data) -> None:
    """Ingest as the socket would: store, then publish the events after commit."""
    async with events.acollecting():
        await sync_to_async(ingest)(agent, data)


async def _approved(escalation, user, note: str) -> None:
    """`user` approves, and the events go out as the decide view sends them."""
    async with events.acollecting():
        await sync_to_async(decisions.decide)(escalation.pk, user, decisions.APPROVE, note)


async def test_a_socket_without_a_session_is_refused(agents):
    await sync_to_async(seed)(agents)
    pk = (await Coordination.objects.aget(key=KEY)).pk
    for path in ("/ws/ui/dashboard/", "/ws/ui/escalations/", f"/ws/ui/coordinations/{pk}/"):
        communicator, connected = await ui_socket(path)
        await communicator.disconnect()
        assert not connected, path


async def test_viewer_receives_the_new_frame_as_an_out_of_band_row(agents, operators):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    async with _admitted(_viewer_path(coordination), operators["vic"]) as communicator:
        await _published(
            agents.metrics,
            {
                "coordination_id": KEY,
                "focus_snapshot": {"state": "queue draining", "health": "WARN"},
            },
        )
        before: list[str] = []
        while 'hx-swap-oob="afterbegin:#timeline-rows"' not in (
            message := await until_message(communicator, "hx-swap-oob")
        ):
            before.append(message)
        assert f'id="frame-{coordination.head_seq + 1}"' in message
        assert "queue draining" in message
        # Rows the page already had are not sent again.
        assert f'id="frame-{coordination.head_seq}"' not in message
        # The summary block follows the snapshot, in the same message or, when the page
        # rendered while the frame was committing, the one before: never after the row.
        summaries = [m for m in [*before, message] if 'id="coordination-summary"' in m]
        assert summaries and "queue draining" in summaries[-1]


async def test_viewer_catches_up_from_the_database_when_no_event_announces_a_frame(
    agents, operators
):
    """The sweeper's writes (another process) reach this process's viewers by no event."""
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    async with _admitted(_viewer_path(coordination), operators["vic"]) as communicator:
        await until_message(communicator, 'id="coordination-summary"')  # the first render is done
        await sync_to_async(send)(
            agents.triage, {"coordination_id": KEY, "focus_snapshot": {"state": "unannounced"}}
        )
        message = await until_message(communicator, "unannounced")
        assert 'hx-swap-oob="afterbegin:#timeline-rows"' in message


async def test_inbox_socket_appends_a_new_escalation_and_shows_it_decided(agents, operators):
    async with _admitted("/ws/ui/escalations/?shown=", operators["bob"]) as communicator:
        await until_message(communicator, 'id="inbox-count"')  # the first render is done
        escalation = await sync_to_async(seed)(agents)
        # seed() publishes nothing: the slow check finds the escalation in the database.
        card = await until_message(communicator, f'id="escalation-{escalation.pk}"')
        assert 'hx-swap-oob="beforeend:#inbox-list"' in card
        assert "guardrail: cannot page DB" in card

        await _approved(escalation, operators["alice"], "page it")
        state = await until_message(communicator, "Approved by alice")
        assert f'id="escalation-{escalation.pk}-state"' in state
        assert 'hx-swap-oob="true"' in state


async def test_dashboard_socket_refreshes_the_list_and_the_pending_count(agents, operators):
    async with _admitted("/ws/ui/dashboard/", operators["vic"]) as communicator:
        await until_message(communicator, "No coordinations yet")
        await sync_to_async(seed)(agents)
        await _published(agents.triage, {"coordination_id": KEY, "focus_snapshot": {"state": "x"}})
        # seed() commits step by step and each step wakes the page at once; a block is sent
        # only when what it shows changed, so the list and the count may come in different
        # messages: wait for the list showing the coordination and for the count of one.
        table = await until_message(communicator, 'id="coordination-table"')
        while KEY not in table:
            table = await until_message(communicator, 'id="coordination-table"')
        count = table
        while not ('id="inbox-count"' in count and "1 pending" in count):
            count = await until_message(communicator, 'id="inbox-count"')


async def test_a_burst_of_frames_reaches_the_viewer_each_once_in_order(agents, operators):
    await sync_to_async(seed)(agents)
    coordination = await Coordination.objects.aget(key=KEY)
    first = coordination.head_seq + 1
    async with _admitted(_viewer_path(coordination), operators["vic"]) as communicator:
        for n in range(60):
            await _published(
                agents.metrics, {"coordination_id": KEY, "focus_snapshot": {"state": f"step {n}"}}
            )
        seen: list[int] = []
        while len(seen) < 60:
            message = await until_message(communicator, "afterbegin:#timeline-rows")
            batch = [int(s) for s in re.findall(r'<li id="frame-(\d+)"', message)]
            assert batch == sorted(batch, reverse=True)  # newest first within a message
            seen.extend(reversed(batch))
        assert seen == list(range(first, first + 60))


@override_settings(CRITICAL_APPROVALS=2)
async def test_a_partial_approval_updates_the_quorum_shown_live(agents, operators):
    await sync_to_async(send)(
        agents.triage,
        {"id": "wipe", "coordination_id": KEY, "route_request": {"action": "delete_data"}},
    )
    escalation = await Escalation.objects.aget()
    async with _admitted(
        f"/ws/ui/escalations/?shown={escalation.pk}", operators["bob"]
    ) as communicator:
        await until_message(communicator, "0 of 2 approvals")
        await _approved(escalation, operators["alice"], "fine by me")
        state = await until_message(communicator, "1 of 2 approvals (alice)")
        assert f'id="escalation-{escalation.pk}-state"' in state
        assert "Approve" in state  # bob can still add the second approval


async def test_a_card_still_as_rendered_is_not_resent_on_connect_so_a_typed_note_survives(
    agents, operators
):
    escalation = await sync_to_async(seed)(agents)
    state_id = f'id="escalation-{escalation.pk}-state"'
    async with _admitted(
        f"/ws/ui/escalations/?shown={escalation.pk}:pending.0.1", operators["bob"]
    ) as communicator:
        first = await until_message(communicator, 'id="inbox-count"')  # the first render is done
        assert state_id not in first
        assert await communicator.receive_nothing(timeout=0.5)

        await _approved(escalation, operators["alice"], "page it")
        state = await until_message(communicator, "Approved by alice")  # a real change still comes
        assert state_id in state


async def test_a_card_rendered_at_an_older_version_is_brought_up_to_date_on_connect(
    agents, operators
):
    escalation = await sync_to_async(seed)(agents)
    await _approved(escalation, operators["alice"], "page it")
    async with _admitted(
        f"/ws/ui/escalations/?shown={escalation.pk}:pending.0.1", operators["bob"]
    ) as communicator:
        state = await until_message(communicator, "Approved by alice")
        assert f'id="escalation-{escalation.pk}-state"' in state
