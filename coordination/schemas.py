"""What crosses the wire: the LTP envelope, bundles, lenient payload views, emitted frames.

Envelope problems are errors (the frame is refused); payload oddities are warnings attached
to the stored frame (PROTOCOL §1: never reject a frame because its payload has an unexpected
shape).

Stable error codes, in `error` frames (`payload.code`) or HTTP `{"error": {"code"}}`. Nothing
is stored for a refused frame; only the first two close a socket (4401, 4429).

    unauthorized           missing or unknown Bearer token (socket: then close 4401; HTTP 401)
    rate_limited           over LTP_RATE_LIMIT frames/s; after MAX_STRIKES in a row, close 4429
    frame_too_large        a message (socket) or frame (HTTP, 413) over LTP_MAX_FRAME_BYTES
    body_too_large         HTTP body over 2 MiB (413)
    too_many_frames        HTTP request with over LTP_MAX_FRAMES_PER_REQUEST frames (413)
    malformed_json         not JSON, not UTF-8, or NaN/Infinity in it
    too_deep               objects and lists nested deeper than MAX_DEPTH (32) levels
    empty_message          an empty list or an empty bundle: nothing to store
    not_an_object          a frame (or list item) that is not a JSON object
    unsupported_version    `v` missing or not the string "0.1"
    missing_id             `id` missing, empty, not a string, or over 200 characters
    invalid_ts             `ts` neither Unix milliseconds nor an ISO-8601 string, or outside
                           1970-01-01 .. 9999-12-31 UTC (0 .. 253402300799999 ms)
    invalid_type           `type` missing or not a non-empty string
    payload_not_object     `payload` missing or not an object (also per frame of a bundle)
    invalid_envelope       `from`, `to` or `coordination_id` not a string (or too long)
    unsafe_integer         an integer beyond +-(2^53 - 1) anywhere in the frame (also a number
                           like 1e20 that JavaScript would print as such an integer)
    unrepresentable_value  a value with no canonical JSON form (e.g. 1e400, which is Infinity)
    invalid_text           a string (or object key) holding a NUL character or a lone UTF-16
                           surrogate (e.g. "\\ud800"): no database can store it as text
    sender_mismatch        `from` names another agent than the authenticated one
    internal_error         an unexpected fault in ltpdash: not stored (the socket stays open)
    storage_failed         the database refused the write: not acknowledged, send it again
                           (HTTP 503 when nothing in the request was stored)
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
)

from coordination.values import (  # noqa: F401  (FrameError and storable: re-exported)
    FrameError,
    check_values,
    parse_message,
    storable,
)

VERSION = "0.1"
KNOWN_TYPES = frozenset(
    {"hello", "heartbeat", "orientation", "route_request", "route_response", "focus_snapshot"}
)
# Who ltpdash is on the wire: the sender of every frame it emits.
LTPDASH = "ltpdash"


# --- the envelope ----------------------------------------------------------------------------


def _ts(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("ts must be Unix milliseconds or an ISO-8601 string")
    return value


# The ts range ltpdash stores: 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z (a datetime can
# hold it, every database stores it, and it is far inside JavaScript's safe integers).
MIN_TS_MS = 0
MAX_TS_MS = 253402300799999


def _ms(value: int | float | str) -> int:
    try:
        ms = int(parse_iso(value).timestamp() * 1000) if isinstance(value, str) else int(value)
    except (ValueError, OverflowError):
        raise ValueError("ts is out of range") from None
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise ValueError("ts is out of range")
    return ms


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    v: Literal["0.1"]
    id: StrictStr = Field(min_length=1, max_length=200)
    ts: Annotated[int | float | StrictStr, BeforeValidator(_ts)]
    type: StrictStr = Field(min_length=1, max_length=100)
    from_: StrictStr | None = Field(default=None, alias="from", max_length=200)
    to: StrictStr | None = Field(default=None, max_length=200)
    payload: dict[str, Any]
    coordination_id: StrictStr | None = Field(default=None, max_length=200)

    @field_validator("ts")
    @classmethod
    def _ts_readable(cls, value: int | float | str) -> int | float | str:
        _ms(value)
        return value

    @property
    def ts_ms(self) -> int:
        return _ms(self.ts)


def parse_iso(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("ts is neither Unix milliseconds nor an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Field -> (code, sentence) for envelope validation failures: stable codes agents can match.
_ENVELOPE_ERRORS = {
    "v": ("unsupported_version", 'LTP version must be the string "0.1".'),
    "id": ("missing_id", "Every frame needs a non-empty string id (at most 200 characters)."),
    "ts": (
        "invalid_ts",
        "ts must be Unix milliseconds or an ISO-8601 string between 1970 and 9999. "
        "Nothing was stored.",
    ),
    "type": ("invalid_type", "type must be a non-empty string."),
    "payload": ("payload_not_object", "payload must be a JSON object."),
    "from": ("invalid_envelope", "from must be a string."),
    "to": ("invalid_envelope", "to must be a string."),
    "coordination_id": ("invalid_envelope", "coordination_id must be a string."),
}


def parse_envelope(data: Any) -> Envelope:
    """Validate one frame's envelope, or raise FrameError with the first problem's code."""
    if not isinstance(data, dict):
        raise FrameError("not_an_object", "A frame must be a JSON object.")
    frame_id = data.get("id") if isinstance(data.get("id"), str) and data["id"] else None
    if frame_id is not None and not storable(frame_id):
        frame_id = None  # an error frame cannot name it either
    # `ts` is judged by its own rule (invalid_ts), the rest here.
    check_values([value for key, value in data.items() if key != "ts"], frame_id)
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        order = list(_ENVELOPE_ERRORS)
        locs = sorted(
            (str(err["loc"][0]) if err["loc"] else "" for err in exc.errors()),
            key=lambda loc: order.index(loc) if loc in order else len(order),
        )
        code, message = _ENVELOPE_ERRORS.get(locs[0], ("invalid_envelope", str(exc)))
        raise FrameError(code, message, frame_id) from None


# --- bundles ---------------------------------------------------------------------------------

BUNDLE_RESERVED = frozenset({"id", "coordination_id", "to"})


def is_bundle(data: Any) -> bool:
    return isinstance(data, dict) and "type" not in data and "v" not in data


def expand(data: Any, sender: str, now_ms: int | None = None) -> list[Any]:
    """Turn what an agent sent (a frame, a list of frames, or a bundle) into frames.

    Bundle frames get `v`, `ts`, `from` filled in; with a bundle `id` each frame's id is
    `<id>:<type>` so a retried bundle is idempotent; without one the server assigns ids.
    Items that are not objects are passed through so that the caller reports them per item.
    """
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(expand(item, sender, now_ms) if is_bundle(item) else [item])
        return out
    if not is_bundle(data):
        return [data]
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    bundle_id = data.get("id")
    frames = []
    for key, payload in data.items():
        if key in BUNDLE_RESERVED:
            continue
        frame: dict[str, Any] = {
            "v": VERSION,
            "id": f"{bundle_id}:{key}" if isinstance(bundle_id, str) and bundle_id else new_id(),
            "ts": now_ms,
            "type": key,
            "from": sender,
            "payload": payload,
        }
        for extra in ("coordination_id", "to"):
            if extra in data:
                frame[extra] = data[extra]
        frames.append(frame)
    return frames


def named_coordination(item: Any) -> str | None:
    """The coordination a frame names as sent (top level, else its payload), before any
    validation: only a hint (group commit spreads and locks by it; ingest decides). None
    for anything that could not be a stored key (not text, too long, control characters,
    lone surrogates)."""
    if not isinstance(item, dict):
        return None
    payload = item.get("payload")
    key = item.get("coordination_id") or (
        payload.get("coordination_id") if isinstance(payload, dict) else None
    )
    return key if isinstance(key, str) and len(key) <= 200 and key.isprintable() else None


def new_id(prefix: str = "srv") -> str:
    """An id for a frame ltpdash makes (one per ack sent): 32 hex digits, a keyed hash of a
    count, the key drawn once per process. Unique as 128 random bits are, and they say
    nothing of how many frames the process answered. A fresh random draw per id was a
    system call that let go of the GIL on the event loop's thread, once per ack, handing it
    to the ingest thread mid-reply; the hash keeps it (inputs this small are hashed under it)."""
    count = next(_ids.count).to_bytes(8, "little")
    return f"{prefix}-{hashlib.blake2b(count, key=_ids.key, digest_size=16).hexdigest()}"


class _Ids:
    def __init__(self) -> None:
        self.draw()

    def draw(self) -> None:
        self.key = os.urandom(32)
        self.count = itertools.count()


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.draw)  # a forked child draws its own


# --- lenient payload views ---------------------------------------------------------------------


def _text(value: Any) -> Any:
    # Numbers and booleans read as text; objects and lists stay invalid (-> warning).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _text_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [_text(v) for v in value if v is not None]
    return value


Text = Annotated[str | None, BeforeValidator(_text)]
TextList = Annotated[list[str], BeforeValidator(_text_list)]


class PayloadView(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class HelloView(PayloadView):
    role: Text = None
    capabilities: TextList = []
    message: Text = None
    coordination_id: Text = None


class HeartbeatView(PayloadView):
    seq: int | None = None
    latency_ms: float | None = None
    load: float | None = None
    status: Text = None


class OrientationView(PayloadView):
    role: Text = None
    intent: Text = None
    guardrails: TextList = []
    mode: Text = None
    focus: Text = None
    identity: Text = None
    coordination_id: Text = None


class Branch(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    key: Text = None  # the object key in the keyed dialect ("primary", "recover", ...)
    id: Text = None
    action: Text = None
    reason: Text = None
    confidence: float | None = None
    path: Text = None
    status: Text = None

    @property
    def named_action(self) -> str:
        """The action this branch would take: `action`, else `targetState`; "" for a plain
        `escalate` branch or none."""
        named = self.action if self.action != "escalate" else ""
        target = (self.model_extra or {}).get("targetState")
        return named or (target if isinstance(target, str) else "")


def _branches(value: Any) -> Any:
    if isinstance(value, dict):
        return [
            {"key": key, **item} if isinstance(item, dict) else {"key": key, "path": item}
            for key, item in value.items()
        ]
    if isinstance(value, list):
        return [item if isinstance(item, dict) else {"path": item} for item in value]
    return value


class RouteRequestView(PayloadView):
    target: Text = None
    need: Text = None
    intent: Text = None
    goal: Text = None
    action: Text = None
    targetState: Text = None
    coordination_id: Text = None
    # The call it wants to make, as `ltpdash_client.Gate` sends it (shown as the proposal).
    args: dict[str, Any] | None = None
    # A request may offer branches too; one naming a critical action makes it one.
    branches: Annotated[list[Branch], BeforeValidator(_branches)] = []

    @property
    def wanted_action(self) -> str:
        return self.action or self.targetState or ""


class RouteResponseView(PayloadView):
    target: Text = None
    result: dict[str, Any] | None = None
    branches: Annotated[list[Branch], BeforeValidator(_branches)] = []
    in_reply_to: Text = None
    coordination_id: Text = None


class FocusSnapshotView(PayloadView):
    coordination_id: Text = None
    state: Text = None
    health: Text = None
    status: Text = None  # "resolved" closes the coordination, "open" reopens it
    reason: Text = None  # on a hand-off: who took over and why
    owner: Text = None


class PresenceView(PayloadView):
    """ltpdash's own presence frames (agents cannot send this type to any effect)."""

    agent: Text = None
    presence: Text = None
    previous: Text = None
    reason: Text = None


VIEWS: dict[str, type[PayloadView]] = {
    "hello": HelloView,
    "heartbeat": HeartbeatView,
    "orientation": OrientationView,
    "route_request": RouteRequestView,
    "route_response": RouteResponseView,
    "focus_snapshot": FocusSnapshotView,
    "presence": PresenceView,
}


V = TypeVar("V", bound=PayloadView)


def view_of(type_: str, payload: dict[str, Any]) -> PayloadView | None:
    """A stored frame's payload read through its type's view (warnings dropped: they were
    attached when the frame came in); None for a type without one."""
    view = VIEWS.get(type_)
    return read_payload(view, payload)[0] if view is not None else None


def read_payload(view: type[V], payload: dict[str, Any]) -> tuple[V, list[str]]:
    """Read a payload through a lenient view: fields of the wrong shape are dropped and
    reported as warnings instead of refusing the frame."""
    try:
        return view.model_validate(payload), []
    except ValidationError as exc:
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        warnings = [f"payload.{loc}: unexpected shape, ignored" for loc in sorted(map(str, bad))]
        cleaned = {k: v for k, v in payload.items() if k not in bad}
        return view.model_validate(cleaned), warnings


# --- what ltpdash sends --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The result of ingesting one frame, turned into an `ack` or `error` frame."""

    frame_id: str | None
    seq: int | None = None
    hash: str | None = None
    duplicate: bool = False
    warnings: list[str] = field(default_factory=list)
    error: FrameError | None = None
    # Not sent; what the consumer reads: the acknowledged frame's type, and the key of the
    # coordination it was stored in (a hello's continuity replay starts from it).
    type: str | None = None
    coordination_key: str | None = None

    def to_frame(self) -> dict[str, Any]:
        if self.error is not None:
            payload: dict[str, Any] = {"code": self.error.code, "message": self.error.message}
            if self.frame_id is not None:
                payload["frame_id"] = self.frame_id
            return emitted("error", payload)
        return emitted(
            "ack",
            {
                "frame_id": self.frame_id,
                "seq": self.seq,
                "hash": self.hash,
                "duplicate": self.duplicate,
                "warnings": self.warnings,
            },
        )


def emitted(
    type_: str,
    payload: dict[str, Any],
    sender: str = LTPDASH,
    frame_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    frame = {
        "v": VERSION,
        "id": frame_id or new_id(LTPDASH),
        "ts": int(time.time() * 1000),
        "type": type_,
        "from": sender,
        "payload": payload,
    }
    frame.update(extra)
    return frame


def error_frame(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    return Outcome(frame_id=frame_id, error=FrameError(code, message, frame_id)).to_frame()
