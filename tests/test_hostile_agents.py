"""Issue 9, "What was found": each case a hostile or broken agent tried, as a test.

Nothing an agent sends takes ltpdash down: every input gets an answer with a documented code,
the socket stays usable, an HTTP batch answers per frame and stores nothing it does not
acknowledge, and odd coordination ids get working console pages and downloads.
"""

import asyncio
import json
from urllib.parse import unquote

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse

from coordination.models import Coordination, Delivery, Escalation, Frame
from coordination.outbox import emit
from coordination.trace import verify_trace
from tests.factories import agent_socket, send

socket_test = pytest.mark.django_db(transaction=True)


def frame(frame_id="ok-1", coordination_id="incident-hostile", **changes):
    base = {
        "v": "0.1",
        "id": frame_id,
        "ts": 1764000000000,
        "type": "orientation",
        "coordination_id": coordination_id,
        "payload": {"role": "triage-agent", "intent": "diagnose backlog"},
    }
    base.update(changes)
    return base


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


NESTED = "[" * 10_000 + "]" * 10_000

# (case, message text, expected code)
CRASHERS = [
    ("nested-arrays", NESTED, "too_deep"),
    (
        "nested-in-payload",
        dumps(frame("deep", payload={})).replace('"payload":{}', '"payload":{"x":' + NESTED + "}"),
        "too_deep",
    ),
    ("ts-max-safe", dumps(frame("ts1", ts=2**53 - 1)), "invalid_ts"),
    ("ts-1e20", dumps(frame("ts2"))[:-1].replace("1764000000000", "1e20") + "}", "invalid_ts"),
    ("ts-negative", dumps(frame("ts3", ts=-(10**15))), "invalid_ts"),
    ("ts-year-1", dumps(frame("ts4", ts="0001-01-01T00:00:00Z")), "invalid_ts"),
    (
        "surrogate-in-field",
        dumps(frame("sur1")).replace("diagnose backlog", "diagnose \\ud800 backlog"),
        "invalid_text",
    ),
    ("surrogate-in-id", dumps(frame("sur2")).replace('"sur2"', '"s\\ud800"'), "invalid_text"),
    ("nul-in-id", dumps(frame("nul\u0000id")), "invalid_text"),
    ("nul-in-field", dumps(frame("nul2", payload={"intent": "a\u0000b"})), "invalid_text"),
    ("nul-in-key", dumps(frame("nul3", payload={"in\u0000tent": "x"})), "invalid_text"),
    ("nul-in-coordination", dumps(frame("nul4", coordination_id="inc\u0000")), "invalid_text"),
]


@socket_test
@pytest.mark.parametrize(("case", "message", "code"), CRASHERS, ids=[c[0] for c in CRASHERS])
async def test_inputs_that_crashed_the_socket_get_an_error_and_the_socket_stays_open(
    agents, case, message, code
):
    socket = agent_socket(agents.triage_token)
    connected, _ = await socket.connect()
    assert connected
    try:
        await socket.send_to(text_data=message)
        reply = json.loads(await socket.receive_from(timeout=10))
        assert reply["type"] == "error", reply
        assert reply["payload"]["code"] == code
        assert "again" not in reply["payload"]["message"]  # never "send it again"
        await socket.send_to(text_data=dumps(frame(f"after-{case}")))
        ack = json.loads(await socket.receive_from(timeout=10))
        assert ack["type"] == "ack" and ack["payload"]["frame_id"] == f"after-{case}"
    finally:
        await socket.disconnect()
    assert await Frame.objects.filter(sender="triage-agent").acount() == 1


def post(client, token, body: str):
    return client.post(
        "/api/v1/frames", body, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "message", "code"), CRASHERS, ids=[c[0] for c in CRASHERS])
def test_the_same_inputs_over_http_are_refused_with_the_code_not_a_500(agents, case, message, code):
    response = Client(raise_request_exception=False).post(
        "/api/v1/frames", message, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {agents.triage_token}",
    )  # fmt: skip
    assert response.status_code == 400, response.content
    body = response.json()
    codes = [f["payload"]["code"] for f in body.get("frames", [])] or [body["error"]["code"]]
    assert codes == [code]
    assert not Frame.objects.exists()


@pytest.mark.django_db
def test_an_http_batch_with_one_bad_frame_acknowledges_every_other_and_stores_only_those(agents):
    good = [frame(f"g{i}") for i in range(5)]
    rest = [frame(f"h{i}") for i in range(5)]
    batch = [*good, frame("bad", ts=2**53 - 1), *rest]
    response = Client(raise_request_exception=False).post(
        "/api/v1/frames", dumps(batch), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {agents.triage_token}",
    )  # fmt: skip
    assert response.status_code == 200
    replies = response.json()["frames"]
    assert [r["type"] for r in replies] == ["ack"] * 5 + ["error"] + ["ack"] * 5
    assert replies[5]["payload"] == {
        "code": "invalid_ts",
        "message": replies[5]["payload"]["message"],
        "frame_id": "bad",
    }
    acked = {r["payload"]["frame_id"] for r in replies if r["type"] == "ack"}
    assert set(Frame.objects.values_list("ltp_id", flat=True)) == acked
    lines = Coordination.objects.get(key="incident-hostile").trace_lines()
    assert verify_trace(lines).ok


# --- odd coordination ids in the console --------------------------------------------------

ODD_IDS = ["ops/4821", "line\nbreak", 'say "hi"', "störung-🔥", "..", "a%2Fb", "\u202eevil"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ODD_IDS)
def test_odd_coordination_ids_get_working_pages_links_and_downloads(agents, operators, key):
    send(agents.triage, [frame("odd-1", coordination_id=key)])
    # An escalation in it, so the inbox shows the id too.
    send(agents.triage, [frame("odd-2", coordination_id=key, type="route_request",
                               payload={"action": "delete_data", "need": "cleanup"})])  # fmt: skip
    assert Escalation.objects.filter(coordination__key=key).exists()
    client = Client()
    client.force_login(operators["vic"])
    for page in ("/coordinations/", "/escalations/"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "<bdi>" in response.content.decode()
    detail = reverse("coordination-detail", args=[key])
    assert detail.count("/") == 3  # the id is one opaque path segment
    response = client.get(detail)
    assert response.status_code == 200
    assert response.context["coordination"].key == key
    for name in ("coordination-trace", "api-trace"):
        headers = {} if name == "coordination-trace" else {
            "HTTP_AUTHORIZATION": f"Bearer {agents.triage_token}"}  # fmt: skip
        download = client.get(reverse(name, args=[key]), **headers)
        assert download.status_code == 200, name
        disposition = download["Content-Disposition"]
        assert "\n" not in disposition and "\r" not in disposition
        assert disposition.isascii()
        assert verify_trace(b"".join(download.streaming_content).decode().splitlines()).ok
        if '"' in key:  # RFC 6266 quoted-string
            assert disposition == 'attachment; filename="say \\"hi\\".audit.trace.jsonl"'
        elif not key.isascii():
            encoded = disposition.split("filename*=utf-8''", 1)[1]
            assert unquote(encoded).startswith(key.replace("/", "_").replace("\n", "_"))
    context = client.get(
        reverse("api-context", args=[key]), HTTP_AUTHORIZATION=f"Bearer {agents.triage_token}"
    )
    assert context.status_code == 200


# --- exactly once, whatever the order of connect and hello ------------------------------------


@socket_test
async def test_a_decision_owed_before_a_late_hello_arrives_once(agents):
    @sync_to_async
    def owe_one():
        send(agents.metrics, [frame("m0", coordination_id="incident-late")])
        coordination = Coordination.objects.get(key="incident-late")
        with transaction.atomic():
            locked = Coordination.locked(coordination.pk)
            stored = emit(locked, "route_response", {"branches": []}, to=[agents.metrics])
        return stored.ltp_id

    ltp_id = await owe_one()
    with override_settings(OUTBOX_CHECK_SECONDS=0.05):
        socket = agent_socket(agents.metrics_token)
        await socket.connect()
        try:
            first = json.loads(await socket.receive_from(timeout=5))  # the outbox check
            assert first["id"] == ltp_id
            await asyncio.sleep(0.3)  # the hello comes late
            hello = frame("late-hello", coordination_id="incident-late", type="hello",
                          payload={"role": "metrics"})  # fmt: skip
            await socket.send_to(text_data=dumps(hello))
            seen = []
            while not await socket.receive_nothing(timeout=1):
                seen.append(json.loads(await socket.receive_from()))
        finally:
            await socket.disconnect()
    assert [f["id"] for f in seen].count(ltp_id) == 0, [f["type"] for f in seen]
    assert await Delivery.objects.filter(ltp_id=ltp_id, acked_at=None).aexists()
