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
)
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
    parse_envelope,
    read_payload,
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


def ingest(agent: Agent, data: Any, session_id: str = "") -> list[Outcome]:
    """Ingest what an agent sent (frame, list or bundle); one outcome per frame, in order.

    Agent acks (`type: ack`) are applied but produce no outcome: nobody acks an ack.
    """
    outcomes = []
    for item in expand(data, agent.name):
        try:
            if isinstance(item, dict) and item.get("type") == "ack":
                apply_agent_ack(agent, item)
                continue
            outcomes.append(ingest_frame(agent, item, session_id))
        except Exception:
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
        with transaction.atomic():
            stored = _append_and_apply(agent, envelope, frame, text, session_id)
    except FrameError as exc:
        # Refused on what the database says (who may speak here): rolled back, nothing kept.
        return Outcome(frame_id=envelope.id, error=exc)
    except DatabaseError as exc:
        if isinstance(exc, IntegrityError):
            # Usually a concurrent copy of the same frame won the race: this one is a duplicate.
            existing = _stored(agent.name, envelope.id)
            if existing is not None:
                return _acknowledged(existing, duplicate=True)
        # Anything else (a full disk, a lost connection; SQLite reports a trigger's refusal as
        # an integrity error too) is the server's failure: no ack, the agent sends it again.
        log.exception("storing frame %r from %s failed", envelope.id, agent.name)
        return _refused(envelope, *STORAGE_FAILED)
    return _acknowledged(stored)


def _stored(sender: str, frame_id: str) -> Frame | None:
    return (
        Frame.objects.filter(sender=sender, ltp_id=frame_id)
        .select_related("coordination")
        .only("ltp_id", "seq", "hash", "warnings", "type", "coordination__key")
        .first()
    )


def _acknowledged(frame: Frame, duplicate: bool = False) -> Outcome:
    return Outcome(
        frame_id=frame.ltp_id,
        seq=frame.seq,
        hash=frame.hash or None,
        duplicate=duplicate,
        warnings=frame.warnings,
        type=frame.type,
        coordination_key=frame.coordination.key if frame.coordination else None,
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
    # NO KEY: rows inserted elsewhere that reference this agent (deliveries) are not blocked.
    connected_as = agent
    agent = Agent.objects.select_for_update(no_key=True).get(pk=agent.pk)
    if agent.token_hash != connected_as.token_hash:
        # Rotated or revoked while this socket was open: it closes within a second; until
        # then nothing it sends is stored.
        raise FrameError("unauthorized", "This token was rotated or revoked.", envelope.id)
    loaded = (agent.last_ts_ms, agent.current_coordination_id, agent.role, agent.capabilities)
    if ts_ms is not None and agent.last_ts_ms is not None and ts_ms < agent.last_ts_ms:
        warnings.append("ts is earlier than this sender's previous frame; kept as sent")
    if ts_ms is not None and (agent.last_ts_ms is None or ts_ms > agent.last_ts_ms):
        agent.last_ts_ms = ts_ms

    key = resolve_coordination_key(agent, envelope, view)
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
        coordination = Coordination.lock(key)
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
            orientation=_orientation_in_force(coordination, agent),
            text=text,
        )
        events.coordination_changed(coordination.pk, stored.seq)

    _apply(agent, stored, envelope, view)
    if (agent.last_ts_ms, agent.current_coordination_id, agent.role, agent.capabilities) != loaded:
        agent.save(update_fields=["last_ts_ms", "current_coordination", "role", "capabilities"])
    saw_agent(agent)
    return stored


def _check_speaker(
    agent: Agent, coordination: Coordination, envelope: Envelope, view: PayloadView | None
) -> None:
    """Only participants speak in a coordination, and only the agent a request is assigned to
    answers it (raises FrameError). The first frame of a coordination opens it."""
    if coordination.head_seq < 0:
        coordination.join(agent, ParticipantVia.OPENED)
    elif not coordination.has_participant(agent):
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


def _orientation_in_force(coordination: Coordination, agent: Agent) -> Frame | None:
    orientation = (
        Orientation.objects.filter(coordination=coordination, agent=agent).only("frame_id").first()
    )
    return Frame(pk=orientation.frame_id) if orientation else None


def resolve_coordination_key(
    agent: Agent, envelope: Envelope, view: PayloadView | None
) -> str | None:
    """PROTOCOL §3: top-level coordination_id, payload.coordination_id, the coordination of
    the request answered (in_reply_to), then the one the agent last declared."""
    if envelope.coordination_id:
        return envelope.coordination_id
    declared = getattr(view, "coordination_id", None)
    if declared:
        return declared[:200]
    in_reply_to = getattr(view, "in_reply_to", None)
    if in_reply_to:
        request = _request_answered(agent, in_reply_to)
        if request is not None:
            return request.coordination.key
    if agent.current_coordination_id:
        return Coordination.objects.values_list("key", flat=True).get(
            pk=agent.current_coordination_id
        )
    return None


def _request_answered(agent: Agent, in_reply_to: str) -> RouteRequest | None:
    # Ids are unique per sender only, so prefer the request that was addressed to this agent.
    candidates = RouteRequest.objects.filter(ltp_id=in_reply_to).select_related("coordination")
    return candidates.filter(assigned_to=agent).first() or candidates.first()


# --- effects ---------------------------------------------------------------------------------


def _apply(agent: Agent, stored: Frame, envelope: Envelope, view: PayloadView | None) -> None:
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
        agent.current_coordination = coordination
    if isinstance(view, OrientationView):
        _orientation(agent, coordination, stored, view)
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
    agent: Agent, coordination: Coordination, stored: Frame, view: OrientationView
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
    # One UPDATE in the usual case; update_or_create would add a savepoint and a SELECT.
    # The agent's row lock makes the create branch race-free.
    if not Orientation.objects.filter(coordination=coordination, agent=agent).update(**fields):
        Orientation.objects.create(coordination=coordination, agent=agent, **fields)
    # The orientation in force for this frame is the one it declares.
    stored.orientation = stored
    stored.save(update_fields=["orientation"])


def _match_request(
    agent: Agent, coordination: Coordination, view: RouteResponseView
) -> RouteRequest | None:
    if view.in_reply_to:
        answered = _request_answered(agent, view.in_reply_to)
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
