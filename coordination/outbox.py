"""Everything ltpdash tells agents, and what they still owe an acknowledgement for.

    emit       ltpdash (or a human through it) says something: the frame is appended to the
               coordination's chain, announced after commit, and owed to its recipients
    owe        an existing frame (a peer's request or answer) is owed to an agent
    owed       what an agent has not acknowledged yet, oldest first
    continuity what an agent gets after hello: the latest snapshot, its own orientation
               there, then everything owed
    ack        the agent acknowledged a frame (an `ack`, or any frame answering it)

A frame is owed before it is sent: the Delivery row is written in the same transaction as the
change that caused it, pushed to the agent's sockets after commit, and sent again on every
reconnect until the agent acknowledges it. So a decision reaches its agent exactly once in
effect, across disconnects and restarts (the agent deduplicates by `id`).
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import Any

from django.utils import timezone

from coordination import events
from coordination.models import Agent, Coordination, Delivery, Frame, Orientation
from coordination.schemas import LTPDASH, emitted, storable

# Owed frames sent in one go at most; the rest follow on the next check.
OWED_BATCH = 200


def emit(
    coordination: Coordination,
    type_: str,
    payload: dict[str, Any],
    *,
    to: Iterable[Agent] = (),
    sender: str = LTPDASH,
    frame_id: str | None = None,
    addressee: str | None = None,
) -> Frame:
    """Append a frame from `sender` to the chain and owe it to each agent of `to`.

    The caller holds the coordination's row lock (`Coordination.locked`) inside a
    transaction. `addressee` fills the frame's `to` field (the agent it answers); `to` is who
    receives it."""
    extra = {"to": addressee} if addressee else {}
    frame = emitted(
        type_, payload, sender=sender, frame_id=frame_id, coordination_id=coordination.key, **extra
    )
    stored = coordination.append(frame, sender=sender, direction="out")
    events.coordination_changed(coordination.pk, stored.seq)
    for agent in to:
        owe(stored, agent)
    return stored


def owe(frame: Frame, agent: Agent) -> None:
    """Owe `frame` to `agent`: stored first, pushed after commit; owed once per agent."""
    delivery, created = Delivery.objects.get_or_create(
        frame=frame, agent=agent, defaults={"ltp_id": frame.ltp_id}
    )
    if created:
        events.frame_owed(agent.pk, delivery.pk, frame.raw)


def owed(agent: Agent, already_sent: Set[int] = frozenset()) -> list[tuple[int, str]]:
    """(delivery pk, frame text) of what `agent` has not acknowledged, oldest first, leaving
    out what this connection has already sent."""
    rows = (
        Delivery.objects.filter(agent=agent, acked_at=None)
        .order_by("created_at", "pk")
        .values_list("pk", "frame__raw")[:OWED_BATCH]
    )
    return [(pk, raw) for pk, raw in rows if pk not in already_sent]


def agents_owed() -> set[int]:
    """The agents owed anything not acknowledged (the `delivery_unacked` index answers it)."""
    unacked = Delivery.objects.filter(acked_at=None).order_by()
    return set(unacked.values_list("agent_id", flat=True).distinct())


def continuity(agent: Agent, coordination_key: str | None) -> list[tuple[int | None, str]]:
    """What an agent gets after hello (PROTOCOL §4): the coordination's latest focus_snapshot
    and its own last orientation there, then every frame it is owed and has not acked.

    The coordination is the one the hello named, else the one the agent last declared."""
    agent.refresh_from_db(fields=["current_coordination"])
    coordination = None
    if coordination_key:
        coordination = (
            Coordination.objects.filter(key=coordination_key)
            .select_related("latest_snapshot")
            .first()
        )
    if coordination is None and agent.current_coordination_id:
        coordination = Coordination.objects.select_related("latest_snapshot").get(
            pk=agent.current_coordination_id
        )
    frames: list[tuple[int | None, str]] = []
    if coordination is not None:
        if coordination.latest_snapshot is not None:
            frames.append((None, coordination.latest_snapshot.raw))
        orientation = (
            Orientation.objects.filter(coordination=coordination, agent=agent)
            .select_related("frame")
            .first()
        )
        if orientation is not None:
            frames.append((None, orientation.frame.raw))
    frames.extend(owed(agent))
    return frames


def ack(agent: Agent, frame_id: str) -> int:
    """The agent acknowledged the frame with LTP id `frame_id`; returns how many deliveries
    that settled (0 for an unknown or already acknowledged id)."""
    if not storable(frame_id):
        return 0  # no frame has such an id (and PostgreSQL refuses NUL in a query)
    return Delivery.objects.filter(agent=agent, ltp_id=frame_id, acked_at=None).update(
        acked_at=timezone.now()
    )
