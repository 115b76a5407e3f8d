"""verify_flow judges a captured flow as PROTOCOL §7 says."""

import json
from pathlib import Path

import pytest

from coordination.conformance import MAX_BODY_BYTES, verify_flow

pytestmark = pytest.mark.mode_independent

CONFORMANCE = Path(__file__).parent / "fixtures" / "ltp" / "fixtures" / "conformance"


def verify_fixture(name):
    return verify_flow((CONFORMANCE / f"{name}.json").read_bytes())


def codes(issues):
    return [issue["code"] for issue in issues]


def flow(*frames):
    return json.dumps({"frames": list(frames)}).encode()


def frame(id, type="heartbeat", ts=1, **extra):
    return {"v": "0.1", "id": id, "ts": ts, "type": type, "payload": {}, **extra}


def test_basic_flow_passes_with_full_score():
    status, verdict = verify_fixture("ok_basic_flow")

    assert status == verdict["httpStatus"] == 200
    assert verdict["ok"] is True
    assert verdict["score"] == 1
    assert verdict["errors"] == verdict["warnings"] == []
    assert verdict["frameCount"] == 6
    assert "hello_first" in verdict["passed"]


def test_unknown_type_is_the_only_warning():
    status, verdict = verify_fixture("warn_missing_optional")

    assert (status, verdict["ok"], verdict["score"]) == (200, True, 0.95)
    assert verdict["errors"] == []
    assert codes(verdict["warnings"]) == ["unknown_type"]
    assert verdict["warnings"][0]["frame"] == 5


def test_duplicate_id_from_same_sender_is_a_warning():
    status, verdict = verify_fixture("fail_duplicate_id")

    assert (status, verdict["ok"], verdict["score"]) == (200, True, 0.95)
    assert codes(verdict["warnings"]) == ["duplicate_id"]
    assert verdict["warnings"][0]["frame"] == 1


def test_hello_not_first_is_422():
    status, verdict = verify_fixture("fail_out_of_order")

    assert status == verdict["httpStatus"] == 422
    assert verdict["ok"] is False
    assert codes(verdict["errors"]) == ["hello_not_first"]
    assert verdict["score"] == 0.75
    assert "hello_first" not in verdict["passed"]
    assert verdict["hints"]


def test_wrong_version_is_400():
    status, verdict = verify_fixture("fail_wrong_version")

    assert status == verdict["httpStatus"] == 400
    assert verdict["ok"] is False
    assert set(codes(verdict["errors"])) == {"wrong_version"}
    assert verdict["warnings"] == []


def test_wrong_version_wins_over_hello_not_first():
    status, verdict = verify_flow(flow(frame("a"), {**frame("b", "hello", ts=2), "v": 0.1}))

    assert status == 400
    assert codes(verdict["errors"]) == ["hello_not_first", "wrong_version"]


def test_ts_going_backwards_is_a_warning_not_an_error():
    status, verdict = verify_flow(
        flow(frame("a", "hello", ts=5), frame("b", ts=3), frame("c", ts=4))
    )

    assert status == 200
    assert codes(verdict["warnings"]) == ["ts_backwards"]
    assert verdict["warnings"][0]["frame"] == 1


def test_iso_ts_is_compared_as_time():
    _, verdict = verify_flow(
        flow(
            frame("a", "hello", ts="2024-03-15T14:00:01.000Z"),
            frame("b", ts="2024-03-15T14:00:00.000Z"),
        )
    )

    assert codes(verdict["warnings"]) == ["ts_backwards"]


def test_same_id_from_different_senders_is_not_a_duplicate():
    status, verdict = verify_flow(
        flow(frame("x", "hello", **{"from": "a"}), frame("x", ts=2, **{"from": "b"}))
    )

    assert (status, verdict["warnings"]) == (200, [])


def test_frames_without_from_share_one_anonymous_sender():
    _, verdict = verify_flow(flow(frame("x", "hello"), frame("x", ts=2)))

    assert codes(verdict["warnings"]) == ["duplicate_id"]


def test_frame_that_is_not_an_object_is_an_error():
    status, verdict = verify_flow(flow(frame("a", "hello"), "oops"))

    assert status == 400
    assert codes(verdict["errors"]) == ["frame_not_object"]
    assert verdict["errors"][0]["frame"] == 1


def test_score_never_goes_below_zero():
    frames = [frame("h", "hello")] + [frame("x", "nonsense", ts=2) for _ in range(30)]

    status, verdict = verify_flow(flow(*frames))

    assert status == 200
    assert verdict["score"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b'{"frames": [NaN]}', "invalid_json"),
        (b"[]", "frames_missing"),
        (b'{"other": 1}', "frames_missing"),
        (b'{"frames": {}}', "frames_missing"),
        (b'{"frames": []}', "frames_empty"),
    ],
)
def test_unreadable_body_or_missing_frames_is_400(body, code):
    status, verdict = verify_flow(body)

    assert status == verdict["httpStatus"] == 400
    assert verdict["ok"] is False
    assert codes(verdict["errors"]) == [code]


def test_more_than_5000_frames_is_413():
    body = json.dumps({"frames": [{}] * 5001}).encode()
    assert len(body) <= MAX_BODY_BYTES

    status, verdict = verify_flow(body)

    assert status == verdict["httpStatus"] == 413
    assert codes(verdict["errors"]) == ["too_many_frames"]
    assert verdict["frameCount"] == 5001


def test_body_over_512_kib_is_413():
    body = flow(frame("h", "hello", payload={"pad": "x" * MAX_BODY_BYTES}))

    status, verdict = verify_flow(body)

    assert status == 413
    assert codes(verdict["errors"]) == ["body_too_large"]


def test_verdict_has_every_field_the_protocol_names():
    _, verdict = verify_fixture("ok_basic_flow")

    assert set(verdict) == {
        "ok",
        "score",
        "errors",
        "warnings",
        "passed",
        "hints",
        "annotations",
        "frameCount",
        "httpStatus",
    }
