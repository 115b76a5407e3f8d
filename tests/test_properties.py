"""Property-based: whatever an agent sends, over either transport, ltpdash answers.

Hypothesis throws arbitrary JSON, frame-shaped objects with hostile fields (huge and negative
numbers, odd `ts`, surrogates, NUL, odd coordination ids), bundles, lists, deep nesting,
invalid UTF-8 and binary messages at the agent socket and at `POST /api/v1/frames`, on
whichever database the run uses (the suite runs on SQLite and on PostgreSQL). Properties:

- the socket never closes (no 1011) and answers every frame; HTTP never answers 5xx
  (503 only for a storage failure, which never happens here);
- nothing is stored that was not acknowledged;
- every coordination's chain verifies, and the console's pages answer 200.

`LTPDASH_HYPOTHESIS_EXAMPLES` (default 1000) sets the generated examples per transport; the
number run is printed in pytest's summary. Besides those, every run sends HOSTILE: one message
of each hostile class, so that each class is met on each database however few examples are
generated (scripts/test.sh generates fewer on the PostgreSQL + Redis pass).
"""

import asyncio
import json
import os

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coordination.models import Coordination, Frame
from coordination.trace import verify_trace
from tests.conftest import PROPERTY_CASES
from tests.factories import agent_socket

EXAMPLES = int(os.environ.get("LTPDASH_HYPOTHESIS_EXAMPLES", "1000"))
PROPERTIES = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# Text of any code point, lone surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
odd_ids = st.sampled_from(
    ["c1", "ops/4821", "line\nbreak", 'say "hi"', "störung-🔥", "\u202eevil", "..", "a%2Fb",
     "nul\x00", "sur\ud800", "", " ", "~7E", "x" * 250]
)  # fmt: skip
numbers = st.one_of(
    st.integers(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**53 - 1, 2**53, 1e20, -(10**15), 0, -1, 1764000000000, 253402300799999]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text, odd_ids)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
timestamps = st.one_of(
    numbers,
    st.sampled_from(
        ["0001-01-01T00:00:00Z", "2025-11-25T12:00:00Z", "9999-12-31T23:59:59Z", "yesterday"]
    ),
    any_text,
    st.booleans(),
)
types = st.sampled_from(
    ["hello", "heartbeat", "orientation", "route_request", "route_response", "focus_snapshot",
     "ack", "presence", "custom"]
) | any_text  # fmt: skip
payloads = st.one_of(
    st.dictionaries(any_text, json_values, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "coordination_id": odd_ids, "target": st.sampled_from(["metrics-agent", "nobody"]),
            "need": any_text, "action": st.sampled_from(["delete_data", "read", "escalate"]),
            "in_reply_to": odd_ids, "frame_id": odd_ids, "intent": any_text,
            "guardrails": st.lists(any_text, max_size=3), "status": any_text, "state": any_text,
            "branches": st.lists(st.fixed_dictionaries(
                {"action": st.sampled_from(["escalate", "approve", "delete_data"])},
                optional={"reason": any_text}), max_size=2),
        },
    ),
    json_values,
)  # fmt: skip
frames = st.fixed_dictionaries(
    {"v": st.just("0.1") | json_values, "id": odd_ids | any_text, "ts": timestamps,
     "type": types, "payload": payloads},
    optional={"from": st.sampled_from(["triage-agent", "metrics-agent", "x"]) | json_values,
              "coordination_id": odd_ids | json_values, "to": any_text},
)  # fmt: skip
bundles = st.fixed_dictionaries(
    {"orientation": payloads},
    optional={"id": odd_ids, "coordination_id": odd_ids, "route_request": payloads,
              "focus_snapshot": payloads},
)  # fmt: skip
structured = st.one_of(frames, st.lists(frames | bundles, min_size=1, max_size=5), bundles)


def _text(value) -> str:
    return json.dumps(value, ensure_ascii=True)  # lone surrogates as \\ud800 escapes


messages = st.one_of(
    structured.map(_text),
    json_values.map(_text),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    any_text,
    st.sampled_from(['{"ts": 1e400}', "[NaN]", "", "{}", "[]", "null", '"\\ud800"']),
    st.binary(max_size=40),
    structured.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)

FAST = override_settings(LTP_RATE_LIMIT=1_000_000)  # the budget is not under test here


def _frame(**fields) -> dict:
    return {"v": "0.1", "id": "h", "ts": 1764000000000, "type": "orientation", "payload": {},
            **fields}  # fmt: skip


_REQUEST = {"target": "metrics-agent", "action": "delete_data"}
# One message of each hostile class the module docstring names, sent on every run.
HOSTILE = [
    # numbers: huge, negative, just past JavaScript's safe range, a float printed as one,
    # beyond double precision
    _text(_frame(ts=2**64)),
    _text(_frame(ts=-1)),
    _text(_frame(payload={"n": 2**53})),
    _text(_frame(payload={"n": 1e20})),
    '{"ts": 1e400}',
    _text(_frame(payload={"n": 1e400})).replace("Infinity", "1e400"),
    "[NaN]",
    # odd ts: the first and last representable days, a word, a bool, a past-the-end one
    *(_text(_frame(ts=ts)) for ts in
      ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday", True, 253402300800000]),
    # lone surrogates and NUL, escaped and raw, in ids, keys, payloads and coordination ids
    _text(_frame(id="sur\ud800")),
    _text(_frame(payload={"\udfff": "x"})),
    _text(_frame(id="nul\x00")),
    _text(_frame(payload={"text": "a\x00b"}, coordination_id="nul\x00")),
    json.dumps(_frame(id="raw\ud800"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
    # odd coordination ids, on a frame and on a bundle's request
    *(_text(_frame(coordination_id=key, type="route_request", payload=_REQUEST))
      for key in ["ops/4821", "line\nbreak", "\u202eevil", "..", "a%2Fb", "", " ", "x" * 250]),
    _text({"orientation": {"intent": "x"}, "coordination_id": "~7E", "route_request": _REQUEST}),
    # bundles and lists: a list mixing frames and bundles, an empty one, an empty bundle
    _text([_frame(), {"orientation": {}, "id": "b"}, _frame(type="route_request")]),
    "[]",
    "{}",
    # spoofed sender, unknown type, wrong version, not an object, null
    _text(_frame(**{"from": "metrics-agent"})),
    _text(_frame(type="custom", v="0.2")),
    _text([1, "two", None]),
    "null",
    # deep nesting
    "[" * 5000 + "]" * 5000,
    '{"a":' * 5000 + "1" + "}" * 5000,
    # not JSON, invalid UTF-8, binary
    "",
    "{not json",
    b"\xff\xfe\x00",
    b'{"v": "0.1", "id": "\xed\xa0\x80"}',
    bytes(range(40)),
]  # fmt: skip


def hostile_examples(test):
    """`test` (a property over `messages`) also runs on each of HOSTILE, every time."""
    for message in reversed(HOSTILE):
        test = example(message)(test)
    return test


def _acked(replies, acked: set[str]) -> None:
    for reply in replies:
        if reply.get("type") == "ack" and reply["payload"].get("frame_id") is not None:
            acked.add(reply["payload"]["frame_id"])


def _check_stored_and_console(sender: str, acked: set[str], operator) -> None:
    stored = set(Frame.objects.filter(sender=sender).values_list("ltp_id", flat=True))
    assert stored <= acked, f"stored without an ack: {sorted(stored - acked)[:5]}"
    client = Client()
    client.force_login(operator)
    for page in ("/coordinations/", "/escalations/"):
        assert client.get(page).status_code == 200, page
    for coordination in Coordination.objects.all()[:100]:
        assert verify_trace(coordination.trace_lines()).ok, coordination.key
        detail = client.get(reverse("coordination-detail", args=[coordination.key]))
        assert detail.status_code == 200, coordination.key
        trace = client.get(reverse("coordination-trace", args=[coordination.key]))
        assert trace.status_code == 200, coordination.key


@pytest.mark.django_db(transaction=True)
def test_the_socket_answers_everything_and_stores_only_what_it_acknowledges(agents, operators):
    loop = asyncio.new_event_loop()
    socket = agent_socket(agents.triage_token)
    acked: set[str] = set()
    cases = 0

    async def exchange(message: str | bytes, n: int) -> None:
        message = message or " "  # an empty websocket message is not expressible here
        if isinstance(message, bytes):
            await socket.send_to(bytes_data=message)
        else:
            await socket.send_to(text_data=message)
        sentinel = f"sentinel-{n}"
        beat = {"v": "0.1", "id": sentinel, "ts": 1, "type": "heartbeat", "payload": {}}
        await socket.send_to(text_data=json.dumps(beat))
        replies = []
        while True:
            reply = json.loads(await socket.receive_from(timeout=30))  # a close would raise
            if reply.get("payload", {}).get("frame_id") == sentinel:
                break
            replies.append(reply)
        # Every frame is answered, except agent acks (nobody acks an ack); the sentinel's
        # answer shows the socket is open and through with the message.
        _acked(replies, acked)

    @given(messages)
    @hostile_examples
    @PROPERTIES
    def property(message):
        nonlocal cases
        cases += 1
        loop.run_until_complete(exchange(message, cases))

    with FAST:
        try:
            assert loop.run_until_complete(socket.connect())[0]
            property()
            loop.run_until_complete(socket.disconnect())
        finally:
            loop.close()
    PROPERTY_CASES["socket"] += cases
    _check_stored_and_console("triage-agent", acked, operators["vic"])


@pytest.mark.django_db
def test_http_answers_everything_with_2xx_or_4xx_and_stores_only_what_it_acknowledges(
    agents, operators
):
    client = Client(raise_request_exception=False)
    acked: set[str] = set()
    cases = 0

    @given(messages)
    @hostile_examples
    @PROPERTIES
    def property(message):
        nonlocal cases
        cases += 1
        body = message if isinstance(message, bytes) else message.encode("utf-8", "surrogatepass")
        response = client.post(
            "/api/v1/frames", body, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {agents.metrics_token}",
        )  # fmt: skip
        assert response.status_code in (200, 400, 413), response.status_code
        answer = response.json()
        assert ("frames" in answer) != ("error" in answer)
        _acked(answer.get("frames", []), acked)

    with FAST:
        property()
    PROPERTY_CASES["http"] += cases
    _check_stored_and_console("metrics-agent", acked, operators["vic"])


@pytest.mark.mode_independent
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40))
@settings(max_examples=EXAMPLES, deadline=None, database=None)
def test_any_coordination_id_has_one_opaque_path_segment_that_reads_back(key):
    from django.urls import resolve

    path = reverse("coordination-detail", args=[key])
    assert path.count("/") == 3 and path.isascii()
    assert resolve(path).kwargs["key"] == key
    PROPERTY_CASES["urls"] += 1
