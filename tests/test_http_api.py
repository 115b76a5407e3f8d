"""The agents' HTTP API: frames in (one, a list, a bundle), context and trace out."""

import asyncio
import io
import json
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from ltpdash_client import LtpClient

from coordination.models import Agent, Frame, Presence
from coordination.trace import verify_trace
from tests.seed import KEY, SEED_REQUEST, SEED_RESPONSE

pytestmark = pytest.mark.django_db


def frame(frame_id, type, payload, **extra):
    return {
        "v": "0.1",
        "id": frame_id,
        "ts": 1764000000000,
        "type": type,
        "coordination_id": KEY,
        "payload": payload,
        **extra,
    }


def post(client, token, body):
    return client.post(
        "/api/v1/frames",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def get(client, token, path):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_one_frame_is_stored_and_acked(client, agents):
    response = post(client, agents.triage_token, frame("o-1", "orientation", {"intent": "look"}))

    assert response.status_code == 200
    [ack] = response.json()["frames"]
    assert ack["type"] == "ack"
    assert ack["from"] == "ltpdash"
    assert ack["payload"] == {
        "frame_id": "o-1",
        "seq": 0,
        "hash": Frame.objects.get(ltp_id="o-1").hash,
        "duplicate": False,
        "warnings": [],
    }


def test_a_list_is_acked_frame_by_frame_in_order(client, agents):
    frames = [
        frame("o-1", "orientation", {"intent": "look"}),
        frame("bad", "orientation", ["not", "an", "object"]),
        frame("s-1", "focus_snapshot", {"state": "looking"}),
    ]

    response = post(client, agents.triage_token, frames)

    assert response.status_code == 200  # at least one was stored
    replies = response.json()["frames"]
    assert [(r["type"], r["payload"]["frame_id"]) for r in replies] == [
        ("ack", "o-1"),
        ("error", "bad"),
        ("ack", "s-1"),
    ]
    assert [replies[0]["payload"]["seq"], replies[2]["payload"]["seq"]] == [0, 1]


def test_a_bundle_is_its_frames_in_key_order_with_server_assigned_ids(client, agents):
    response = post(
        client,
        agents.triage_token,
        {
            "coordination_id": KEY,
            "orientation": {"role": "triage-agent", "intent": "diagnose backlog"},
            "focus_snapshot": {"state": "diagnosis started"},
        },
    )

    assert response.status_code == 200
    acks = response.json()["frames"]
    assert [a["type"] for a in acks] == ["ack", "ack"]
    ids = [a["payload"]["frame_id"] for a in acks]
    assert all(fid.startswith("srv-") for fid in ids)
    stored = Frame.objects.filter(coordination__key=KEY).order_by("seq")
    assert [(f.ltp_id, f.type) for f in stored] == [
        (ids[0], "orientation"),
        (ids[1], "focus_snapshot"),
    ]
    assert all(f.data["from"] == "triage-agent" and f.data["v"] == "0.1" for f in stored)


def test_a_request_where_nothing_was_stored_is_400(client, agents):
    response = post(client, agents.triage_token, [frame("bad", "hello", "nope")])

    assert response.status_code == 400
    assert response.json()["frames"][0]["payload"]["code"] == "payload_not_object"


def test_too_many_frames_in_one_request_is_413(client, agents, settings):
    settings.LTP_MAX_FRAMES_PER_REQUEST = 3
    frames = [frame(f"s-{n}", "focus_snapshot", {}) for n in range(4)]

    response = post(client, agents.triage_token, frames)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_frames"
    assert not Frame.objects.exists()


def test_frames_endpoint_accepts_only_post(client, agents):
    assert get(client, agents.triage_token, "/api/v1/frames").status_code == 405


def _incident(client, agents):
    """The seed flow's state over HTTP: an orientation, an open request to an online agent,
    a request to a human (an escalation) and a snapshot."""
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.ONLINE)
    response = post(
        client,
        agents.triage_token,
        [
            frame(
                "o-1",
                "orientation",
                {"role": "triage-agent", "intent": "diagnose backlog", "guardrails": ["no prod"]},
            ),
            frame("rr-1", "route_request", {"target": "metrics-agent", "need": "queue depth"}),
            frame("rr-2", "route_request", {"target": "human", "need": "may I page the DB?"}),
            frame("s-1", "focus_snapshot", {"state": "diagnosis pending", "health": "WARN"}),
        ],
    )
    assert [r["type"] for r in response.json()["frames"]] == ["ack"] * 4


def test_context_rehydrates_orientations_snapshot_open_requests_and_escalations(client, agents):
    _incident(client, agents)

    response = get(client, agents.metrics_token, f"/api/v1/coordinations/{KEY}/context")

    assert response.status_code == 200
    context = response.json()
    assert context["coordination"]["id"] == KEY
    assert context["coordination"]["state"] == "diagnosis pending"
    assert context["coordination"]["health"] == "WARN"
    assert context["latest_snapshot"]["id"] == "s-1"
    assert context["latest_snapshot"]["payload"]["state"] == "diagnosis pending"
    [orientation] = context["orientations"]
    assert orientation["agent"] == "triage-agent"
    assert orientation["intent"] == "diagnose backlog"
    assert orientation["guardrails"] == ["no prod"]
    [request] = context["open_requests"]
    assert request["id"] == "rr-1"
    assert request["assigned_to"] == "metrics-agent"
    assert request["need"] == "queue depth"
    [escalation] = context["escalations"]
    assert escalation["reason"] == "may I page the DB?"
    assert escalation["status"] == "pending"
    assert escalation["in_reply_to"] == "rr-2"
    assert [f["id"] for f in context["recent_frames"] if f["from"] == "triage-agent"] == [
        "o-1",
        "rr-1",
        "rr-2",
        "s-1",
    ]


def test_trace_export_verifies_and_carries_the_frames_as_sent(client, agents):
    _incident(client, agents)

    response = get(client, agents.triage_token, f"/api/v1/coordinations/{KEY}/trace")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert f"{KEY}.audit.trace.jsonl" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    verdict = verify_trace(lines)
    assert verdict.ok, verdict.why
    assert verdict.entries == Frame.objects.filter(coordination__key=KEY).count() == len(lines)
    entries = [json.loads(line) for line in lines]
    assert [e["i"] for e in entries] == list(range(len(entries)))
    first = entries[0]["frame"]
    assert first == {
        **frame(
            "o-1",
            "orientation",
            {"role": "triage-agent", "intent": "diagnose backlog", "guardrails": ["no prod"]},
        ),
        "from": "triage-agent",
    }


def test_unknown_coordination_is_404(client, agents):
    for what in ("context", "trace"):
        response = get(client, agents.triage_token, f"/api/v1/coordinations/nope/{what}")
        assert response.status_code == 404


def test_every_endpoint_is_401_without_a_token(client, agents):
    _incident(client, agents)

    for response in (
        client.post("/api/v1/frames", "{}", content_type="application/json"),
        client.get(f"/api/v1/coordinations/{KEY}/context"),
        client.get(f"/api/v1/coordinations/{KEY}/trace"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_seed_flow_trace_served_by_daphne_verifies_and_matches_exporttrace(live, agents):
    triage = LtpClient(live.agent_url, agents.triage_token, "triage-agent", coordination_id=KEY)
    metrics = LtpClient(live.agent_url, agents.metrics_token, "metrics-agent", coordination_id=KEY)
    async with triage, metrics:
        await triage.send(SEED_REQUEST)
        await metrics.receive(type="route_request")
        await metrics.send(SEED_RESPONSE)
        await triage.receive(type="route_response", where=lambda f: f["from"] == "metrics-agent")

    def fetch() -> tuple[int, str, str]:
        request = urllib.request.Request(
            f"{live.http}/api/v1/coordinations/{KEY}/trace",
            headers={"Authorization": f"Bearer {agents.metrics_token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()

    status, content_type, body = await asyncio.to_thread(fetch)

    assert status == 200
    assert content_type.startswith("application/jsonl")
    verdict = verify_trace(body.splitlines())
    assert verdict.ok, verdict.why
    exported = io.StringIO()
    await sync_to_async(call_command)("exporttrace", KEY, stdout=exported)
    # Disconnects may append presence entries after the fetch; the fetched chain is a prefix.
    assert exported.getvalue().startswith(body)
    types = [json.loads(line)["frame"]["type"] for line in body.splitlines()]
    for expected in ("orientation", "route_request", "route_response", "focus_snapshot"):
        assert expected in types
