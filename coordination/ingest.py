"""The one entry point for frames from agents, whichever transport brought them.

    1. parse      the envelope (pydantic), payload through lenient views
    2. authorise  `from` is the authenticated agent (filled in when missing)
    3. dedupe     (sender, id) is unique: a retry is acknowledged again, never applied again
    4. append     to the coordination's hash chain, under the coordination's row lock
    5. effects    orientation, route request, escalation, snapshot, presence: same transaction
    6. publish    channel-layer events after commit (coordination.events)

An outcome (ack) is produced only after the transaction has committed, so "acknowledged"
always means "stored".
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from coordination import decisions, events, outbox
from coordination.canonical import CanonicalError, canonical
from coordination.models import (
    Agent,
    Coordination,
    CoordinationStatus,
    Frame,
    Orientation,
    ParticipantVia,
    RequestStatus,
    RouteRequest,
    ensure_writable,
    prepared,
)
from coordination.pending import AGENT_FIELDS, Batch, Stale, agent_values
from coordination.presence import saw_agent
from coordination.schemas import (
    KNOWN_TYPES,
    VIEWS,
    Envelope,
    FocusSnapshotView,
    FrameError,
    HelloView,
    OrientationView,
    Outcome,
    PayloadView,
    RouteRequestView,
    RouteResponseView,
    expand,
    named_coordination,
    parse_envelope,
    read_payload,
)
from coordination.statements import (
    Seen,
    coordination_key_of,
    locked_agent,
    locked_coordination,
    request_answered,
    seen,
    stored_frame,
)

log = logging.getLogger(__name__)

STORAGE_FAILED = (
    "storage_failed",
    "The frame could not be stored, so it was not acknowledged; send it again.",
)


INTERNAL_ERROR = (
    "internal_error",
    "ltpdash failed unexpectedly on this frame; it was not stored. The fault is logged.",
)


@dataclass
class Work:
    """What one socket sent, waiting for a batch (coordination.batching)."""

    agent: Agent
    items: list[Any]
    session_id: str


class _Redo(Exception):
    """Rolls a batch back whole so that it runs again frame by frame."""


# Set while a batch runs: frames are stored without a savepoint each, optimistically, and
# the rows they lock are kept from frame to frame (coordination.pending).
_batched: ContextVar[Batch | None] = ContextVar("ltpdash_batched", default=None)


def ingest_batch(batch: list[Work]) -> list[list[Outcome]]:
    """Ingest several sockets' frames in one transaction (group commit); outcomes per Work.

    Optimistic: the frames are stored one after another with no savepoint each and no
    duplicate check before the INSERT (the unique (sender, id) constraint is the check).
    Anything but a plain success (a refusal after the locks, a duplicate, a fault, a COMMIT
    that fails) rolls the batch back whole, and it runs again frame by frame, each frame in
    its own transaction as when it comes alone: the outcomes are then exactly those. Nothing
    of a batch is answered before its COMMIT: the caller sends the outcomes after this returns.
    """
    pending = Batch()
    token = _batched.set(pending)
    try:
        with transaction.atomic():
            if len(batch) > 1 or len(batch[0].items) > 1:  # a lone frame locks what it uses
                pending.lock(
                    [work.agent.pk for work in batch],
                    [key for work in batch for key in map(named_coordination, work.items) if key],
                )
            results = [ingest(work.agent, work.items, work.session_id) for work in batch]
            pending.settle()
            return results
    except (_Redo, Stale, DatabaseError):
        pass
    finally:
        _batched.reset(token)
    log.debug("a batch of %d was not stored whole; storing frame by frame", len(batch))
    return [ingest(work.agent, work.items, work.session_id) for work in batch]


def ingest(agent: Agent, data: Any, session_id: str = "") -> list[Outcome]:
    """Ingest what an agent sent (frame, list or bundle); one outcome per frame, in order.

    Agent acks (`type: ack`) are applied but produce no outcome: nobody acks an ack.
    """
    outcomes = []
    for item in expand(data, agent.name):
        try:
            if isinstance(item, dict) and item.get("type") == "ack":
                _settle()
                apply_agent_ack(agent, item)
                continue
            outcomes.append(ingest_frame(agent, item, session_id))
        except Exception as exc:
            if _batched.get():
                raise _Redo from exc
            # A fault of ours, not the agent's: the frame's transaction rolled back, so it is
            # answered (not stored) and the frames after it still are ingested.
            log.exception("ingesting a frame from %s failed", agent.name)
            frame_id = item.get("id") if isinstance(item, dict) else None
            error = FrameError(*INTERNAL_ERROR, frame_id if isinstance(frame_id, str) else None)
            outcomes.append(Outcome(frame_id=error.frame_id, error=error))
    return outcomes


def ingest_frame(agent: Agent, item: Any, session_id: str = "") -> Outcome:
    try:
        envelope = parse_envelope(item)
    except FrameError as exc:
        return Outcome(frame_id=exc.frame_id, error=exc)
    frame = dict(item)
    if envelope.from_ is None:
        frame["from"] = agent.name
    elif envelope.from_ != agent.name:
        return _refused(
            envelope,
            "sender_mismatch",
            f"This connection is authenticated as {agent.name!r}; "
            f"it cannot send frames from {envelope.from_!r}.",
        )
    try:
        text = canonical(frame)
    except CanonicalError as exc:
        return _refused(envelope, "unrepresentable_value", f"{exc}. Nothing was stored.")
    if envelope.type == "heartbeat":
        # Heartbeats keep presence fresh; they are not chain entries (presence changes are).
        saw_agent(agent, heartbeat=True)
        return Outcome(frame_id=envelope.id, type="heartbeat")
    if not _batched.get():  # in a batch the INSERT's unique constraint checks (a redo)
        existing = _stored(agent.name, envelope.id)
        if existing is not None:
            return _acknowledged(existing, duplicate=True)
    return _store(agent, envelope, frame, text, session_id)


def _refused(envelope: Envelope, code: str, message: str) -> Outcome:
    return Outcome(frame_id=envelope.id, error=FrameError(code, message, envelope.id))


def _store(
    agent: Agent, envelope: Envelope, frame: dict[str, Any], text: str, session_id: str
) -> Outcome:
    try:
        if _batched.get():  # the batch's transaction: any fault rolls it back whole
            stored = _append_and_apply(agent, envelope, frame, text, session_id)
        else:
            with transaction.atomic():
                stored = _append_and_apply(agent, envelope, frame, text, session_id)
    except (FrameError, DatabaseError) as exc:
        if _batched.get():
            raise _Redo from exc
        if isinstance(exc, FrameError):
            # Refused on what the database says (who may speak here): rolled back, nothing kept.
            return Outcome(frame_id=envelope.id, error=exc)
        return _failed(agent, envelope, exc)
    return _acknowledged(stored)


def _failed(agent: Agent, envelope: Envelope, exc: DatabaseError) -> Outcome:
    if isinstance(exc, IntegrityError):
        # Usually a concurrent copy of the same frame won the race: this one is a duplicate.
        existing = _stored(agent.name, envelope.id)
        if existing is not None:
            return _acknowledged(existing, duplicate=True)
    # Anything else (a full disk, a lost connection; SQLite reports a trigger's refusal as
    # an integrity error too) is the server's failure: no ack, the agent sends it again.
    log.exception("storing frame %r from %s failed", envelope.id, agent.name)
    return _refused(envelope, *STORAGE_FAILED)


def _stored(sender: str, frame_id: str) -> Frame | None:
    return stored_frame(sender, frame_id)


def _acknowledged(frame: Frame, duplicate: bool = False) -> Outcome:
    key = getattr(frame, "coordination_key", None)
    if key is None and frame.coordination is not None:
        key = frame.coordination.key
    return Outcome(
        frame_id=frame.ltp_id,
        seq=frame.seq,
        hash=frame.hash or None,
        duplicate=duplicate,
        warnings=frame.warnings,
        type=frame.type,
        coordination_key=key,
    )


def _append_and_apply(
    agent: Agent, envelope: Envelope, frame: dict[str, Any], text: str, session_id: str
) -> Frame:
    warnings: list[str] = []
    view = None
    if envelope.type in KNOWN_TYPES:
        view, view_warnings = read_payload(VIEWS[envelope.type], envelope.payload)
        warnings.extend(view_warnings)
    else:
        warnings.append(f"unknown type {envelope.type!r}: stored and acknowledged, no effect")

    ts_ms = _ts_ms(envelope)
    # In a batch, an orientation (or a frame of unknown type) changes only rows the batch
    # keeps (coordination.pending); any other frame's effects read them from the database.
    batch = _batched.get()
    if batch is not None and not (view is None or isinstance(view, OrientationView)):
        batch.settle()
        batch = None
    # NO KEY: rows inserted elsewhere that reference this agent (deliveries) are not blocked.
    agent, connected_as = batch.agent(agent.pk) if batch else locked_agent(agent.pk), agent
    if agent.token_hash != connected_as.token_hash:
        # Rotated or revoked while this socket was open: it closes within a second; until
        # then nothing it sends is stored.
        raise FrameError("unauthorized", "This token was rotated or revoked.", envelope.id)
    loaded = agent_values(agent)
    if ts_ms is not None and agent.last_ts_ms is not None and ts_ms < agent.last_ts_ms:
        warnings.append("ts is earlier than this sender's previous frame; kept as sent")
    if ts_ms is not None and (agent.last_ts_ms is None or ts_ms > agent.last_ts_ms):
        agent.last_ts_ms = ts_ms

    key = coordination_key_of(agent, envelope, view)
    if key is None and batch is not None:  # not a chain entry: stored as any other frame
        batch.settle()
        batch = None
    ts = datetime.fromtimestamp(ts_ms / 1000, tz=UTC) if ts_ms is not None else None
    if key is None:
        stored = Frame.objects.create(
            ltp_id=envelope.id,
            sender=agent.name,
            agent=agent,
            type=envelope.type,
            raw=text,
            ts=ts,
            session_id=session_id,
            warnings=warnings,
        )
    else:
        stored = _chained(agent, key, envelope, frame, view, batch, text, session_id, warnings, ts)
    _apply(agent, stored, envelope, view, batch)
    if batch is None and agent_values(agent) != loaded:
        prepared.update(agent, AGENT_FIELDS)
    saw_agent(agent)
    return stored


def _chained(
    agent: Agent,
    key: str,
    envelope: Envelope,
    frame: dict[str, Any],
    view: PayloadView | None,
    batch: Batch | None,
    text: str,
    session_id: str,
    warnings: list[str],
    ts: datetime | None,
) -> Frame:
    """Append the frame to the chain of coordination `key`, under its lock (the batch's)."""
    coordination = batch.coordination(key, agent) if batch else locked_coordination(key, agent)
    if _seen(coordination).imported:
        ensure_writable(coordination.pk, envelope.id)
    _check_speaker(agent, coordination, envelope, view)
    stored = coordination.append(
        frame,
        sender=agent.name,
        agent=agent,
        direction="in",
        session_id=session_id,
        warnings=warnings,
        ts=ts,
        # The sender's orientation in force there (read with the coordination's lock).
        orientation_id=_seen(coordination).orientation_frame,
        text=text,
        write_head=batch is None,
        insert=batch.insert if batch else prepared.insert,
    )
    if batch:
        batch.owe_head(coordination)  # its pages are hinted once, when the batch settles
    else:
        events.coordination_changed(coordination.pk, stored.seq)
    return stored


def _settle() -> None:
    """Before a frame whose effects read the rows a batch keeps: write what it owes them."""
    batch = _batched.get()
    if batch is not None:
        batch.settle()


def _check_speaker(
    agent: Agent, coordination: Coordination, envelope: Envelope, view: PayloadView | None
) -> None:
    """Only participants speak in a coordination, and only the agent a request is assigned to
    answers it (raises FrameError). The first frame of a coordination opens it."""
    if coordination.head_seq < 0:
        coordination.join(agent, ParticipantVia.OPENED)
        _seen(coordination).participant = True
    elif not (_seen(coordination).participant or agent.covers(coordination.key)):
        raise FrameError(
            "not_a_participant",
            f"{agent.name} is not a participant of this coordination: an agent opens it, is "
            "routed into it, is admitted by an operator, or holds a token scoped to it.",
            envelope.id,
        )
    if isinstance(view, RouteResponseView):
        request = _match_request(agent, coordination, view)
        if request is not None and request.assigned_to_id != agent.pk:
            raise FrameError(
                "not_assigned",
                f"Request {request.ltp_id!r} is not assigned to {agent.name}; only the agent "
                "it is assigned to can answer it.",
                envelope.id,
            )


def _ts_ms(envelope: Envelope) -> int | None:
    try:
        return envelope.ts_ms
    except (ValueError, OverflowError):
        return None


def _seen(coordination: Coordination) -> Seen:
    """What was read with the coordination's lock (ingest locks it with locked_coordination)."""
    known = seen(coordination)
    assert known is not None, "the coordination was not locked by locked_coordination"
    return known


# --- effects ---------------------------------------------------------------------------------


def _apply(
    agent: Agent, stored: Frame, envelope: Envelope, view: PayloadView | None, batch: Batch | None
) -> None:
    in_reply_to = envelope.payload.get("in_reply_to")
    if isinstance(in_reply_to, str):
        # Any frame carrying in_reply_to acknowledges what it answers (PROTOCOL §4).
        outbox.ack(agent, in_reply_to)
    if isinstance(view, HelloView):
        if view.role:
            agent.role = view.role[:200]
        if view.capabilities:
            agent.capabilities = view.capabilities
    coordination = stored.coordination
    if coordination is None or view is None:
        return
    if isinstance(view, HelloView | OrientationView):
        prepared.attach(agent, "current_coordination", coordination)
    if isinstance(view, OrientationView):
        _orientation(agent, coordination, stored, view, batch)
    elif isinstance(view, RouteRequestView):
        action = decisions.requested_action(agent, view)
        request = RouteRequest.objects.create(
            coordination=coordination,
            frame=stored,
            requester=agent,
            ltp_id=stored.ltp_id,
            target=(view.target or envelope.to or "")[:200],
            need=view.need or view.intent or view.goal or "",
            action=action[:200],
        )
        decisions.route(request, action=action)
    elif isinstance(view, RouteResponseView):
        answered = _match_request(agent, coordination, view)
        decisions.answer(agent, stored, view, answered)
    elif isinstance(view, FocusSnapshotView):
        _snapshot(coordination, stored, view)


def _snapshot(coordination: Coordination, stored: Frame, view: FocusSnapshotView) -> None:
    coordination.latest_snapshot = stored
    coordination.state = (view.state or "")[:500]
    coordination.health = (view.health or "")[:20]
    status = (view.status or "").strip().lower()
    if status in CoordinationStatus.values:
        coordination.status = status
    coordination.save(update_fields=["latest_snapshot", "state", "health", "status"])


def _orientation(
    agent: Agent,
    coordination: Coordination,
    stored: Frame,
    view: OrientationView,
    batch: Batch | None,
) -> None:
    fields = {
        "frame": stored,
        "role": (view.role or "")[:200],
        "intent": view.intent or "",
        "guardrails": view.guardrails,
        "mode": (view.mode or "")[:200],
        "focus": view.focus or "",
        "updated_at": timezone.now(),
    }
    # One UPDATE of the row read with the coordination's lock in the usual case; the agent's
    # row lock makes the create branch race-free.
    known = _seen(coordination)
    # The orientation in force for this frame is the one it declares (a batch inserts the
    # frame later, so: as it is inserted).
    prepared.attach(stored, "orientation", stored)
    if batch and known.orientation_pk is not None:
        batch.owe_orientation(known.orientation_pk, fields)
    else:
        if known.orientation_pk is None or not prepared.update_row(
            Orientation, known.orientation_pk, fields
        ):
            orientation = Orientation.objects.create(
                coordination=coordination, agent=agent, **fields
            )
            known.orientation_pk = orientation.pk
        if batch is None:
            prepared.update(stored, ["orientation"])
    known.orientation_frame = stored.pk


def _match_request(
    agent: Agent, coordination: Coordination, view: RouteResponseView
) -> RouteRequest | None:
    if view.in_reply_to:
        answered = request_answered(agent, view.in_reply_to)
        return answered if answered and answered.coordination_id == coordination.pk else None
    # Agents written from the seed example answer without in_reply_to: take the oldest open
    # request this agent was asked in this coordination.
    return (
        RouteRequest.objects.filter(
            coordination=coordination, assigned_to=agent, status=RequestStatus.OPEN
        )
        .order_by("created_at")
        .first()
    )


def apply_agent_ack(agent: Agent, item: dict[str, Any]) -> None:
    payload = item.get("payload")
    frame_id = payload.get("frame_id") if isinstance(payload, dict) else None
    if isinstance(frame_id, str):
        outbox.ack(agent, frame_id)
