"""The human gate holds, over real websockets against a real daphne: a peer's answer that names
a critical action is held until humans approve (and never delivered if they reject), and
critical actions are recognised by meaning, whatever their spelling, on both transports."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from coordination.actions import action_key
from coordination.decisions import APPROVE, LTP_CRITICAL_ACTIONS, REJECT, critical_rule, decide
from coordination.models import Delivery, Escalation, EscalationStatus, RequestStatus, RouteRequest
from tests.factories import (
    acked_id,
    averified_trace,
    metrics_client,
    online,
    post_frames_live,
    triage_client,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CRITICAL = LTP_CRITICAL_ACTIONS
CYRILLIC = str.maketrans("aeopcx", "\u0430\u0435\u043e\u0440\u0441\u0445")
FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in map(chr, range(0x21, 0x7F))}


def spellings(action: str) -> list[str]:
    """Ways of writing `action` that mean it: case, separators, invisible characters,
    look-alike letters, full-width forms, and mixes of them."""
    words = action.split("_")
    return [
        action.upper(),
        action.title(),
        "-".join(words),
        " ".join(words),
        ".".join(words),
        "\u2014".join(words),  # em dash
        "__".join(words),
        f"  {action}  ",
        action + "\u200b",  # zero-width space
        "\u200d".join(action),  # zero-width joiners between every letter
        action.replace("_", "\u00ad_"),  # soft hyphen
        action.translate(CYRILLIC),
        action.translate(FULL_WIDTH),
        "_\u2060".join(words).upper(),  # word joiner, upper case
        "-".join(words).translate(CYRILLIC).title(),
    ]


# Every critical action, each spelled at least two ways; well over twenty spellings in all.
SPELLED = [
    (action, spelling)
    for index, action in enumerate(CRITICAL)
    for spelling in spellings(action)[index % 5 :: 5]
]
# Not critical: different words that only start or end alike.
LOOK_ALIKES = [
    "transfer_moneyflow_report",
    "transfer_monkey",
    "place_orders_report",
    "mydelete_data",
]


def test_every_spelling_has_the_key_of_its_action():
    assert len(SPELLED) >= 20
    for action, spelling in SPELLED:
        assert action_key(spelling) == action_key(action), (action, spelling)
    for look_alike in LOOK_ALIKES:
        assert action_key(look_alike) not in {action_key(a) for a in CRITICAL}, look_alike


def _escalations_for(frame_id: str) -> list[Escalation]:
    request = RouteRequest.objects.get(ltp_id=frame_id)
    return list(Escalation.objects.filter(route_request=request))


def _assert_escalated_not_routed(frame_id: str, agents) -> None:
    request = RouteRequest.objects.get(ltp_id=frame_id)
    assert request.status == RequestStatus.ESCALATED, request.status
    assert request.assigned_to is None
    (escalation,) = _escalations_for(frame_id)
    assert escalation.rule_id.startswith("AGENTS.CRIT."), escalation.rule_id
    assert not Delivery.objects.filter(agent=agents.metrics, frame__ltp_id=frame_id).exists()


async def test_critical_spellings_over_the_socket_escalate_and_are_never_routed(live, agents):
    await sync_to_async(online)("metrics-agent")
    async with triage_client(live, agents) as triage:
        for n, (_action, spelling) in enumerate(SPELLED):
            acks = await triage.send(
                {"id": f"s-{n}", "route_request": {"target": "metrics-agent", "action": spelling}}
            )
            await sync_to_async(_assert_escalated_not_routed)(
                acked_id(acks, "route_request"), agents
            )


def test_critical_spellings_over_http_escalate_and_are_never_routed(live, agents):
    online("metrics-agent")
    for n, (_action, spelling) in enumerate(SPELLED):
        # Also as a branch of the request, and in targetState: wherever an action can appear.
        where = ["action", "targetState", "branch"][n % 3]
        request = {"target": "metrics-agent", "coordination_id": "incident-4821"}
        if where == "branch":
            request["branches"] = [{"action": spelling, "reason": "needed"}]
        else:
            request[where] = spelling
        reply = post_frames_live(
            live, agents.triage_token, {"id": f"h-{n}", "route_request": request}
        )
        assert [f["type"] for f in reply["frames"]] == ["ack"], reply
        _assert_escalated_not_routed(f"h-{n}:route_request", agents)


def test_look_alikes_that_mean_something_else_are_still_routed(live, agents):
    online("metrics-agent")
    for n, action in enumerate(LOOK_ALIKES):
        request = {"target": "metrics-agent", "action": action, "coordination_id": "incident-4821"}
        post_frames_live(live, agents.triage_token, {"id": f"l-{n}", "route_request": request})
        routed = RouteRequest.objects.get(ltp_id=f"l-{n}:route_request")
        assert routed.status == RequestStatus.OPEN and routed.assigned_to == agents.metrics
        assert not Escalation.objects.filter(route_request=routed).exists()


@pytest.mark.django_db(transaction=False)
def test_extra_critical_actions_are_compared_by_meaning_too(agents, settings):
    # LTPDASH_EXTRA_CRITICAL_ACTIONS, written any way, matches any spelling of the action.
    settings.EXTRA_CRITICAL_ACTIONS = ["Page DB On-Call"]
    assert critical_rule(agents.metrics, "p\u0430ge-db-on-\u200bcall") is not None
    assert critical_rule(agents.metrics, "PAGE_DB_ON_CALL") is not None
    assert critical_rule(agents.metrics, "page_db_status") is None


# --- held replies -----------------------------------------------------------------------------

TRANSFER = {"action": "transfer_money", "reason": "refund 5000 EUR now"}


async def _ask_and_hold(triage, metrics) -> tuple[str, Escalation]:
    """triage-agent asks metrics-agent, which answers with a transfer_money branch: the
    answer is stored and escalated, and triage-agent gets nothing carrying it."""
    asked = acked_id(
        await triage.send({"id": "ask-1", "route_request": {"target": "metrics-agent"}}),
        "route_request",
    )
    await metrics.receive(type="route_request")
    await metrics.send(
        {
            "id": "answer-1",
            "type": "route_response",
            "payload": {"in_reply_to": asked, "branches": [TRANSFER]},
        }
    )
    escalation = await Escalation.objects.select_related("held_frame").aget(
        held_frame__ltp_id="answer-1"
    )
    with pytest.raises(asyncio.TimeoutError):
        await triage.receive(type="route_response", timeout=1.0, where=_carries_transfer)
    return asked, escalation


def _from_alice(frame: dict) -> bool:
    return frame["from"] == "human:alice"


def _carries_transfer(frame: dict) -> bool:
    return "transfer_money" in json.dumps(frame)


async def test_a_held_answer_reaches_the_requester_after_the_decision_once_approved(
    live, agents, operators
):
    async with triage_client(live, agents) as triage, metrics_client(live, agents) as metrics:
        _, escalation = await _ask_and_hold(triage, metrics)
        assert escalation.status == EscalationStatus.PENDING

        result = await sync_to_async(decide)(escalation.pk, operators["alice"], APPROVE, "ok")
        assert result.decided
        decision = await triage.receive(
            type="route_response", where=lambda f: f["from"] == "human:alice"
        )
        held = await triage.receive(type="route_response", where=lambda f: f["id"] == "answer-1")
        assert decision["payload"]["branches"][0]["action"] == "approve"
        assert held["payload"]["branches"] == [TRANSFER]
        # The decision first, then the answer it released, and each once.
        order = await sync_to_async(list)(
            Delivery.objects.filter(
                agent=agents.triage, frame__ltp_id__in=["answer-1", decision["id"]]
            )
            .order_by("created_at", "pk")
            .values_list("frame__ltp_id", flat=True)
        )
        assert order == [decision["id"], "answer-1"]
    assert (await averified_trace()).ok


async def test_a_held_answer_is_never_delivered_once_rejected(live, agents, operators):
    async with triage_client(live, agents) as triage, metrics_client(live, agents) as metrics:
        _, escalation = await _ask_and_hold(triage, metrics)

        await sync_to_async(decide)(escalation.pk, operators["alice"], REJECT, "no refunds")
        rejection = await triage.receive(
            type="route_response", where=lambda f: f["from"] == "human:alice"
        )
        assert rejection["payload"]["branches"][0]["action"] == "reject"
        with pytest.raises(asyncio.TimeoutError):
            await triage.receive(type="route_response", timeout=1.0, where=_carries_transfer)
    assert not await Delivery.objects.filter(
        agent=agents.triage, frame__ltp_id="answer-1"
    ).aexists()


@pytest.mark.django_db(transaction=False)
def test_the_console_says_what_is_held(agents, client_for):
    from tests.factories import frame, send

    online("metrics-agent")
    send(agents.triage, frame("ask-9", "route_request", {"target": "metrics-agent"}))
    answer = {"in_reply_to": "ask-9", "branches": [TRANSFER]}
    send(agents.metrics, frame("answer-9", "route_response", answer))
    page = client_for("alice").get("/escalations/").content.decode()
    assert "answer to triage-agent is stored but <strong>not delivered</strong>" in page


@pytest.mark.django_db(transaction=False)
def test_a_critical_action_padded_past_the_stored_length_still_escalates(agents):
    # Stored actions are cut at 200 characters; the decision is made on what was sent.
    from tests.factories import frame, send

    online("metrics-agent")
    padded = "\u200b" * 10_000 + "transfer_money"
    send(
        agents.triage,
        frame("pad-1", "route_request", {"target": "metrics-agent", "action": padded}),
    )
    request = RouteRequest.objects.get(ltp_id="pad-1")
    assert request.status == RequestStatus.ESCALATED and request.assigned_to is None
    assert len(request.action) == 200
    assert not Delivery.objects.filter(agent=agents.metrics, frame__ltp_id="pad-1").exists()


def test_long_actions_are_compared_without_being_kept_in_the_cache():
    # Agents choose actions (up to a frame's size): only short ones are remembered.
    from coordination import actions

    padded = " " * 10_000 + "Cache-Probe"
    before = actions.cached_keys()
    key = action_key(padded)
    assert actions.cached_keys() == before
    assert key == action_key("cache_probe")
