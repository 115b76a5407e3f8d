"""Conformance verification of a captured flow (PROTOCOL §7).

``verify_flow`` answers LTP's ``POST /conformance/verify``: it takes the raw
request body and returns the HTTP status with the verdict document. It
stores nothing and routes nothing; it only judges the flow as written.

Status rules: a body that cannot be read as a flow is 400 (413 when too
big). Envelope errors (a frame that is not an object, a ``v`` other than
"0.1") are 400 as well; flow errors (``hello`` not first) are 422; 400 wins
when both occur. Warnings never change the status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coordination.canonical import parse_json
from coordination.schemas import KNOWN_TYPES, VERSION

__all__ = ["KNOWN_TYPES", "MAX_BODY_BYTES", "MAX_FRAMES", "verify_flow"]

MAX_BODY_BYTES = 512 * 1024
MAX_FRAMES = 5000

# Envelope errors make the flow malformed (400); any other error is 422.
_ENVELOPE_ERRORS = frozenset({"frame_not_object", "wrong_version"})

# Check name -> hint shown when it fails, in the order checks are reported.
_CHECKS = {
    "frames_are_objects": "Every frame must be a JSON object.",
    "hello_first": "Start the flow with a hello frame.",
    "version": 'Set "v" to the string "0.1" on every frame.',
    "ts_order": "Keep ts non-decreasing in the order frames are sent.",
    "unique_ids": "Give every frame from one sender its own id.",
    "known_types": "Unknown frame types are ignored; use only the six LTP v0.1 types.",
}
_CHECK_OF_CODE = {
    "frame_not_object": "frames_are_objects",
    "hello_not_first": "hello_first",
    "wrong_version": "version",
    "ts_backwards": "ts_order",
    "duplicate_id": "unique_ids",
    "unknown_type": "known_types",
}


def verify_flow(body: bytes) -> tuple[int, dict[str, Any]]:
    """Judge a ``{"frames": [...]}`` body; return (http_status, verdict)."""
    if len(body) > MAX_BODY_BYTES:
        return _rejected(413, "body_too_large", f"body is over {MAX_BODY_BYTES} bytes")
    try:
        document = parse_json(body)
    except (ValueError, RecursionError):
        return _rejected(400, "invalid_json", "body is not valid JSON")
    if type(document) is not dict or "frames" not in document:
        return _rejected(400, "frames_missing", 'body must be an object with a "frames" list')
    frames = document["frames"]
    if type(frames) is not list:
        return _rejected(400, "frames_missing", '"frames" must be a list')
    if not frames:
        return _rejected(400, "frames_empty", '"frames" is empty')
    if len(frames) > MAX_FRAMES:
        return _rejected(
            413, "too_many_frames", f"{len(frames)} frames, at most {MAX_FRAMES}", len(frames)
        )
    return _judge(frames)


def _issue(code: str, message: str, frame: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "frame": frame}


def _rejected(
    status: int, code: str, message: str, frame_count: int = 0
) -> tuple[int, dict[str, Any]]:
    # Nothing was judged, so nothing passed and the score is 0 rather than
    # what the formula would give for one error.
    return status, {
        "ok": False,
        "score": 0.0,
        "errors": [_issue(code, message, None)],
        "warnings": [],
        "passed": [],
        "hints": [message[0].upper() + message[1:] + "."],
        "annotations": [],
        "frameCount": frame_count,
        "httpStatus": status,
    }


def _judge(frames: list[Any]) -> tuple[int, dict[str, Any]]:
    judgement = _Judgement()
    for index, frame in enumerate(frames):
        if type(frame) is not dict:
            judgement.errors.append(_issue("frame_not_object", "frame is not a JSON object", index))
            continue
        for check in _FRAME_CHECKS:
            check(judgement, index, frame)
    # A first frame that is not an object is already an error; it is not counted twice, but
    # "hello first" cannot be reported as passed either.
    unjudged = set() if type(frames[0]) is dict else {"hello_first"}
    return judgement.verdict(len(frames), unjudged)


@dataclass
class _Judgement:
    """What the checks found so far in one flow."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    # ts order is judged across the whole flow, by frame position, against the last frame
    # whose ts could be read: a captured flow is one conversation, and per-sender order
    # would miss a mediator reordering it.
    last_ts: float | None = None
    last_ts_frame: int = -1
    # Senders without "from" are treated as one anonymous sender (None).
    seen_ids: dict[tuple[str | None, str], int] = field(default_factory=dict)

    def verdict(self, frame_count: int, unjudged: set[str]) -> tuple[int, dict[str, Any]]:
        issues = self.errors + self.warnings
        failed = {_CHECK_OF_CODE[issue["code"]] for issue in issues} | unjudged
        status = 200
        if self.errors:
            envelope = any(issue["code"] in _ENVELOPE_ERRORS for issue in self.errors)
            status = 400 if envelope else 422
        score = round(max(0.0, 1 - 0.25 * len(self.errors) - 0.05 * len(self.warnings)), 3)
        annotations = [
            {"frame": issue["frame"], "note": f"{issue['code']}: {issue['message']}"}
            for issue in issues
        ] + self.notes
        annotations.sort(key=lambda a: a["frame"])
        return status, {
            "ok": not self.errors,
            "score": score,
            "errors": self.errors,
            "warnings": self.warnings,
            "passed": [name for name in _CHECKS if name not in failed],
            "hints": [hint for name, hint in _CHECKS.items() if name in failed],
            "annotations": annotations,
            "frameCount": frame_count,
            "httpStatus": status,
        }


def _hello_first(judgement: _Judgement, index: int, frame: dict[str, Any]) -> None:
    if index == 0 and frame.get("type") != "hello":
        message = f"first frame is {_show(frame.get('type'))}, not hello"
        judgement.errors.append(_issue("hello_not_first", message, index))


def _version(judgement: _Judgement, index: int, frame: dict[str, Any]) -> None:
    if "v" not in frame:
        judgement.errors.append(_issue("wrong_version", 'v is missing, expected "0.1"', index))
    elif frame["v"] != VERSION:
        message = f'v is {_show(frame["v"])}, expected "0.1"'
        judgement.errors.append(_issue("wrong_version", message, index))


def _ts_order(judgement: _Judgement, index: int, frame: dict[str, Any]) -> None:
    ts = _ts_millis(frame.get("ts"))
    if ts is None:
        judgement.notes.append(
            {"frame": index, "note": "ts missing or unreadable; order not checked"}
        )
        return
    if judgement.last_ts is not None and ts < judgement.last_ts:
        message = f"ts is earlier than frame {judgement.last_ts_frame}'s"
        judgement.warnings.append(_issue("ts_backwards", message, index))
    judgement.last_ts, judgement.last_ts_frame = ts, index


def _unique_id(judgement: _Judgement, index: int, frame: dict[str, Any]) -> None:
    frame_id = frame.get("id")
    sender = frame.get("from") if type(frame.get("from")) is str else None
    if type(frame_id) is not str or not frame_id:
        judgement.notes.append({"frame": index, "note": "id missing or not a string; not checked"})
        return
    key = (sender, frame_id)
    if key in judgement.seen_ids:
        who = sender if sender is not None else "the anonymous sender"
        message = (
            f"id {_show(frame_id)} from {who} was already used by frame {judgement.seen_ids[key]}"
        )
        judgement.warnings.append(_issue("duplicate_id", message, index))
    else:
        judgement.seen_ids[key] = index


def _known_type(judgement: _Judgement, index: int, frame: dict[str, Any]) -> None:
    frame_type = frame.get("type")
    # Checked as str first: a list or object here is unhashable.
    if type(frame_type) is not str or frame_type not in KNOWN_TYPES:
        message = f"type {_show(frame_type)} is not an LTP v0.1 type; ignored"
        judgement.warnings.append(_issue("unknown_type", message, index))


# One function per check, in the order their findings are reported for a frame.
_FRAME_CHECKS: list[Callable[[_Judgement, int, dict[str, Any]], None]] = [
    _hello_first,
    _version,
    _ts_order,
    _unique_id,
    _known_type,
]


def _show(value: Any) -> str:
    if value is None:
        return "missing"
    text = f'"{value}"' if type(value) is str else repr(value)
    # Agent-supplied; keep messages short whatever was sent.
    return text if len(text) <= 60 else text[:59] + "…"


def _ts_millis(value: Any) -> float | None:
    """ts as Unix milliseconds: numbers as given, ISO-8601 strings parsed."""
    if type(value) in (int, float):
        try:
            return float(value)
        except OverflowError:
            return None
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            # LTP timestamps are UTC; a zone-less string is read that way.
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp() * 1000
    return None
