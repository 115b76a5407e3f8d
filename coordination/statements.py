"""The reads the frame path makes for every frame, each one prepared statement.

Written as querysets (so they read like the rest of the code and follow the models), compiled
once per database and thread by `models.prepared`. The coordination's lock also brings what
ingest asks about it for each frame (imported? is the sender a participant? its orientation
in force?), four statements in one. A batch (coordination.pending) locks its agents and its
coordinations in one statement per table instead; and which coordination a frame belongs to
(PROTOCOL §3) is read here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Exists, F, Model, OuterRef, QuerySet, Subquery

from coordination.models import (
    Agent,
    Coordination,
    Frame,
    Orientation,
    Participant,
    RouteRequest,
    TraceImport,
)
from coordination.models.prepared import M, PreparedSelect, Slot, marks, table
from coordination.schemas import Envelope, PayloadView

# Placeholder values, unique and of each field's type; never bound to a query.
_NAME, _ID, _PK, _AGENT = "\ue000name", "\ue000id", -7_000_001, -7_000_002

_STORED: PreparedSelect[Frame] = PreparedSelect(
    lambda sender, ltp_id: (
        Frame.objects.filter(sender=sender, ltp_id=ltp_id)
        .annotate(coordination_key=F("coordination__key"))
        .only("ltp_id", "seq", "hash", "warnings", "type")[:1]
    ),
    Slot("sender", _NAME),
    Slot("ltp_id", _ID),
)

_AGENT_LOCKED: PreparedSelect[Agent] = PreparedSelect(
    lambda pk: Agent.objects.select_for_update(no_key=True).filter(pk=pk)[:1], Slot("pk", _PK)
)


def _coordination(key: str, agent: int):  # type: ignore[no-untyped-def]
    mine = {"coordination": OuterRef("pk"), "agent_id": agent}
    orientation = Orientation.objects.filter(**mine)
    return (
        Coordination.objects.select_for_update(no_key=True)
        .filter(key=key)
        .annotate(
            imported=Exists(TraceImport.objects.filter(coordination=OuterRef("pk"))),
            participant=Exists(Participant.objects.filter(**mine)),
            orientation_pk=Subquery(orientation.values("pk")[:1]),
            orientation_frame=Subquery(orientation.values("frame_id")[:1]),
        )[:1]
    )


_COORDINATION_LOCKED: PreparedSelect[Coordination] = PreparedSelect(
    _coordination, Slot("key", _NAME), Slot("agent", _AGENT)
)


def stored_frame(sender: str, frame_id: str) -> Frame | None:
    """The frame `sender` already sent with `frame_id`, with `coordination_key` set."""
    return _STORED.first(sender=sender, ltp_id=frame_id)


def locked_agent(pk: int) -> Agent:
    """The agent's row, locked for the rest of the transaction (FOR NO KEY UPDATE)."""
    agent = _AGENT_LOCKED.first(pk=pk)
    if agent is None:
        raise Agent.DoesNotExist(pk)
    return agent


@dataclass
class Seen:
    """What the coordination's lock read about it for the frame's sender."""

    imported: bool
    participant: bool  # the sender was made one (opened, routed, admitted)
    orientation_pk: int | None  # the sender's Orientation row there
    orientation_frame: int | None  # the frame of its orientation in force there


def locked_coordination(key: str, agent: Agent) -> Coordination:
    """The coordination named `key` (created by its first frame), its row locked; `seen()`
    gives what was read with it about `agent`."""
    found = _COORDINATION_LOCKED.first(key=key, agent=agent.pk)
    if found is None:
        Coordination.objects.get_or_create(key=key)
        found = _COORDINATION_LOCKED.first(key=key, agent=agent.pk)
        assert found is not None
    found.__dict__["_seen"] = Seen(
        imported=bool(found.__dict__.pop("imported")),
        participant=bool(found.__dict__.pop("participant")),
        orientation_pk=found.__dict__.pop("orientation_pk"),
        orientation_frame=found.__dict__.pop("orientation_frame"),
    )
    return found


def seen(coordination: Coordination) -> Seen | None:
    """What `locked_coordination` read with `coordination` (None for one locked otherwise)."""
    found = coordination.__dict__.get("_seen")
    return found if isinstance(found, Seen) else None


# A batch's locks take a list of keys: one prepared statement per length of the list (at most
# MAX_BATCH of them, each compiled when first used), with placeholders of each field's type.
def _over_list(
    count: int, placeholder: Callable[[int], Any], query: Callable[[list[Any]], QuerySet[M]]
) -> PreparedSelect[M]:
    """`query(values)` prepared for lists of `count` values (`_values` binds them)."""
    slots = [Slot(f"v{i}", placeholder(i)) for i in range(count)]
    return PreparedSelect(lambda **values: query(list(values.values())), *slots)


def _values(items: list[Any]) -> dict[str, Any]:
    return {f"v{i}": item for i, item in enumerate(items)}


@cache
def _agents_locked(count: int) -> PreparedSelect[Agent]:
    return _over_list(
        count,
        lambda i: -7_000_100 - i,
        lambda pks: Agent.objects.select_for_update(no_key=True).filter(pk__in=pks).order_by("pk"),
    )


@cache
def _coordinations_locked(count: int) -> PreparedSelect[Coordination]:
    return _over_list(
        count,
        lambda i: f"\ue000key{i}",
        lambda keys: (
            Coordination.objects.select_for_update(no_key=True)
            .filter(key__in=keys)
            .annotate(imported=Exists(TraceImport.objects.filter(coordination=OuterRef("pk"))))
            .order_by("pk")
        ),
    )


def locked_agents(pks: list[int]) -> list[Agent]:
    """Several agents' rows (distinct keys), locked in one statement, in primary-key order (the
    order every batch locks them in)."""
    return _agents_locked(len(pks)).all(**_values(pks)) if pks else []


def _pairs(model: type[Model], columns: str, coordinations: list[int], agents: list[int]) -> list:
    """`columns` of `model`'s rows for these coordinations and agents (a plain statement: the
    ORM would build it anew for every batch)."""
    sql = (
        f"SELECT {columns} FROM {table(model)} "  # noqa: S608 (names from the models; values bound)
        f"WHERE coordination_id IN ({marks(len(coordinations))})"
        f" AND agent_id IN ({marks(len(agents))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*coordinations, *agents])
        return cursor.fetchall()


def locked_coordinations(
    keys: list[str], agents: list[int]
) -> tuple[list[Coordination], dict[tuple[int, int], Seen]]:
    """The coordinations named `keys` that exist, locked in primary-key order, and what
    `locked_coordination` would have read with each for each of `agents`: three statements
    for a batch instead of one per coordination and agent."""
    if not keys:
        return [], {}
    found = _coordinations_locked(len(keys)).all(**_values(keys))
    ids = [c.pk for c in found]
    if not ids:
        return [], {}
    participants = {
        tuple(row) for row in _pairs(Participant, "coordination_id, agent_id", ids, agents)
    }
    orientations = {
        (c, a): (pk, frame)
        for c, a, pk, frame in _pairs(
            Orientation, "coordination_id, agent_id, id, frame_id", ids, agents
        )
    }
    seen = {}
    for coordination in found:
        imported = bool(coordination.__dict__.pop("imported"))
        for agent in agents:
            pair = (coordination.pk, agent)
            orientation_pk, frame = orientations.get(pair, (None, None))
            seen[pair] = Seen(imported, pair in participants, orientation_pk, frame)
    return found, seen


def coordination_key_of(agent: Agent, envelope: Envelope, view: PayloadView | None) -> str | None:
    """PROTOCOL §3: top-level coordination_id, payload.coordination_id, the coordination of
    the request answered (in_reply_to), then the one the agent last declared."""
    if envelope.coordination_id:
        return envelope.coordination_id
    declared = getattr(view, "coordination_id", None)
    if declared:
        return declared[:200]
    in_reply_to = getattr(view, "in_reply_to", None)
    if in_reply_to:
        request = request_answered(agent, in_reply_to)
        if request is not None:
            return request.coordination.key
    if agent.current_coordination_id:
        return Coordination.objects.values_list("key", flat=True).get(
            pk=agent.current_coordination_id
        )
    return None


def request_answered(agent: Agent, in_reply_to: str) -> RouteRequest | None:
    """The request a frame answers (`in_reply_to`). Ids are unique per sender only, so the
    request that was addressed to `agent` first."""
    candidates = RouteRequest.objects.filter(ltp_id=in_reply_to).select_related("coordination")
    return candidates.filter(assigned_to=agent).first() or candidates.first()
