"""POST /conformance/verify gives the verdicts PROTOCOL §7 lists for the five fixtures."""

import json
from pathlib import Path

import pytest
from django.test import Client

from coordination.conformance import MAX_BODY_BYTES
from coordination.models import Frame

CONFORMANCE = Path(__file__).parent / "fixtures" / "ltp" / "fixtures" / "conformance"
URL = "/conformance/verify"

pytestmark = pytest.mark.django_db


def verify(client, body: bytes):
    response = client.post(URL, body, content_type="application/json")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def codes(issues):
    return [issue["code"] for issue in issues]


# fixture -> (status, ok, score, error codes, warning codes)
VERDICTS = {
    "ok_basic_flow": (200, True, 1, [], []),
    "warn_missing_optional": (200, True, 0.95, [], ["unknown_type"]),
    "fail_duplicate_id": (200, True, 0.95, [], ["duplicate_id"]),
    "fail_out_of_order": (422, False, 0.75, ["hello_not_first"], []),
    "fail_wrong_version": (400, False, 0.5, ["wrong_version", "wrong_version"], []),
}


@pytest.mark.parametrize("name", list(VERDICTS))
def test_fixture_gets_the_verdict_the_protocol_lists(client, name):
    status, ok, score, errors, warnings = VERDICTS[name]

    got_status, verdict = verify(client, (CONFORMANCE / f"{name}.json").read_bytes())

    assert got_status == verdict["httpStatus"] == status
    assert verdict["ok"] is ok
    assert verdict["score"] == score
    assert codes(verdict["errors"]) == errors
    assert codes(verdict["warnings"]) == warnings
    frames = json.loads((CONFORMANCE / f"{name}.json").read_text())["frames"]
    assert verdict["frameCount"] == len(frames)
    assert not Frame.objects.exists()  # it judges, it stores nothing


def test_needs_no_login_and_no_csrf_token():
    strict = Client(enforce_csrf_checks=True)

    response = strict.post(
        URL, (CONFORMANCE / "ok_basic_flow.json").read_bytes(), content_type="application/json"
    )

    assert response.status_code == 200


def test_body_over_512_kib_is_413(client):
    body = json.dumps(
        {"frames": [{"v": "0.1", "id": "h", "ts": 1, "type": "hello", "payload": {}}]}
    )
    body = body[:-1] + ', "pad": "' + "x" * MAX_BODY_BYTES + '"}'

    status, verdict = verify(client, body.encode())

    assert status == verdict["httpStatus"] == 413
    assert codes(verdict["errors"]) == ["body_too_large"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"this is not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b'{"frames": "none"}', "frames_missing"),
        (b'{"frames": []}', "frames_empty"),
    ],
    ids=["text", "binary", "frames-not-a-list", "frames-empty"],
)
def test_unreadable_body_is_400(client, body, code):
    status, verdict = verify(client, body)

    assert status == verdict["httpStatus"] == 400
    assert verdict["ok"] is False
    assert codes(verdict["errors"]) == [code]


def test_get_is_not_allowed(client):
    assert client.get(URL).status_code == 405
