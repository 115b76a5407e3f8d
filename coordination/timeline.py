"""The coordination page's timeline as operators read it: filtered by agent and frame type
(from the URL, so a filter survives reload and can be shared), with presence churn folded.

After a decision the agents disconnect and reconnect; one row per presence change buries the
decision under them. Adjacent presence frames fold into one entry with one line per agent
("metrics-agent: online → offline → online"), the rows themselves one click away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import urlencode

from django.db import connection
from django.db.models import QuerySet

from coordination.models import HUMAN_PREFIX, Coordination, Frame
from coordination.models.prepared import PreparedSelect, Slot, table
from coordination.present import TIMELINE_PAGE, TimelineRow
from coordination.schemas import PresenceView
from coordination.sharing import SHARED

PRESENCE = "presence"


@dataclass(frozen=True)
class Filter:
    """Which frames the timeline shows: one sender, one frame type, or all."""

    sender: str = ""
    type: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filter:
        return cls(sender=query.get("sender", "")[:210], type=query.get("type", "")[:100])

    @property
    def active(self) -> bool:
        return bool(self.sender or self.type)

    @property
    def query(self) -> str:
        """`sender=…&type=…` for links and the live socket (empty when no filter)."""
        return urlencode({k: v for k, v in (("sender", self.sender), ("type", self.type)) if v})

    def apply(self, frames: QuerySet[Frame]) -> QuerySet[Frame]:
        if self.sender:
            frames = frames.filter(sender=self.sender)
        if self.type:
            frames = frames.filter(type=self.type)
        return frames


@dataclass
class Fold:
    """Adjacent presence frames, newest first: one line per agent."""

    rows: list[TimelineRow] = field(default_factory=list)

    @property
    def frame(self) -> Frame:
        return self.rows[0].frame  # the newest: its seq and time stand for the fold

    @property
    def oldest(self) -> Frame:
        return self.rows[-1].frame

    @property
    def lines(self) -> list[str]:
        changes: dict[str, list[str]] = {}
        for row in reversed(self.rows):  # oldest first, as the states followed each other
            view = row.frame.view
            if not isinstance(view, PresenceView):
                continue
            states = changes.setdefault(view.agent or "?", [view.previous or "?"])
            states.append(view.presence or "?")
        return [
            f"{agent}: {' → '.join(states)}"
            + (f" ({len(states) - 1} changes)" if len(states) > 2 else "")
            for agent, states in sorted(changes.items())
        ]


Entry = TimelineRow | Fold


def fold(rows: list[TimelineRow]) -> list[Entry]:
    """Runs of two or more adjacent presence rows become one Fold."""
    entries: list[Entry] = []
    run: list[TimelineRow] = []
    for row in [*rows, None]:
        if row is not None and row.frame.type == PRESENCE:
            run.append(row)
            continue
        if len(run) >= 2:
            entries.append(Fold(run))
        else:
            entries.extend(run)
        run = []
        if row is not None:
            entries.append(row)
    return entries


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    older: int | None  # the `before` of the next page, when there is one


def page(coordination_pk: int, before: int | None, only: Filter, size: int = TIMELINE_PAGE) -> Page:
    """Newest first, by keyset on seq (the chain's unique index, so page 200 costs what page 1
    costs), filtered, with presence churn folded."""
    frames = only.apply(
        Frame.objects.filter(coordination_id=coordination_pk)
        .select_related("orientation")
        .order_by("-seq")
    )
    if before is not None:
        frames = frames.filter(seq__lt=before)
    found = list(frames[: size + 1])
    older = found[size - 1].seq if len(found) > size else None
    return Page(fold([TimelineRow(f) for f in found[:size]]), older)


# Placeholder values for the prepared reads below, of each field's type; never bound.
_PK, _SEQ = -7_100_001, -7_100_002


@cache
def _after(limit: int) -> PreparedSelect[Frame]:
    """Live pages read the rows after their seq for every state they show: prepared once
    (models.prepared), as the ORM would build it each time."""
    return PreparedSelect(
        lambda pk, seq: (
            Frame.objects.filter(coordination_id=pk, seq__gt=seq)
            .select_related("orientation")
            .order_by("seq")[:limit]
        ),
        Slot("pk", _PK),
        Slot("seq", _SEQ),
    )


def after(coordination_pk: int, seq: int, only: Filter, limit: int) -> tuple[list[Frame], int]:
    """Frames after `seq` (oldest first, at most `limit` looked at) that pass the filter, and
    the seq the page has seen up to."""
    frames = _after(limit).all(pk=coordination_pk, seq=seq)
    if not frames:
        return [], seq
    # Seq 0 is a frame like any other (`or` would take it for "no seq" and send it again).
    last = frames[-1].seq if frames[-1].seq is not None else seq
    kept = [f for f in frames if (not only.sender or f.sender == only.sender)]
    return [f for f in kept if not only.type or f.type == only.type], last


_WITH_OWNER: PreparedSelect[Coordination] = PreparedSelect(
    lambda pk: Coordination.objects.select_related("owner").filter(pk=pk)[:1], Slot("pk", _PK)
)


def with_owner(coordination_pk: int) -> Coordination:
    """The coordination and its owner, as the side blocks of its live page show them (read
    for every state of its chain, so prepared)."""
    found = _WITH_OWNER.first(pk=coordination_pk)
    if found is None:
        raise Coordination.DoesNotExist(coordination_pk)
    return found


def choices(coordination_pk: int) -> tuple[list[str], list[str]]:
    """The senders and frame types this coordination's chain holds (for the filter)."""
    frames = Frame.objects.filter(coordination_id=coordination_pk).order_by()
    senders = sorted(set(frames.values_list("sender", flat=True).distinct()))
    types = sorted(set(frames.values_list("type", flat=True).distinct()))
    return senders, types


@dataclass(frozen=True)
class Digest:
    """What a chain says about its agents up to `seq`: who has spoken in it, and the seq of
    their latest focus snapshot (None: none yet)."""

    seq: int = -1
    agents: frozenset[int] = frozenset()
    snapshot: int | None = None

    def then(self, frames: Iterable[tuple[int | None, int | None, str, str]]) -> Digest:
        """This digest after `frames` (seq, agent pk, type, sender), oldest first."""
        seq, agents, snapshot = self.seq, set(self.agents), self.snapshot
        for at, agent_pk, type_, sender in frames:
            seq = seq if at is None else at
            if agent_pk is not None:
                agents.add(agent_pk)
            if type_ == "focus_snapshot" and not sender.startswith(HUMAN_PREFIX):
                snapshot = seq
        return Digest(seq, frozenset(agents), snapshot)


@cache
def _digest_sql() -> str:
    return (
        f"SELECT seq, agent_id, type, sender FROM {table(Frame)}"  # noqa: S608
        " WHERE coordination_id = %s AND seq > %s ORDER BY seq"
    )


def digest(coordination_pk: int) -> Digest:
    """The chain's digest, kept between calls (`SHARED`) and brought up to date from the
    frames appended since: a chain only grows, so one read of the chain's index past the
    kept seq, whatever the chain's length (the first read, once, reads the whole chain)."""
    key = ("digest", coordination_pk)
    known: Digest = SHARED.kept(key) or Digest()
    with connection.cursor() as cursor:  # every wake of the page: no ORM to build each time
        cursor.execute(_digest_sql(), [coordination_pk, known.seq])
        now = known.then(cursor.fetchall())
    SHARED.keep(key, now.seq, now)
    return now


def snapshot_at(coordination_pk: int, seq: int | None) -> Frame | None:
    """The focus snapshot a digest names."""
    if seq is None:
        return None
    return Frame.objects.filter(coordination_id=coordination_pk, seq=seq).first()


def agents_snapshot(coordination: Coordination) -> Frame | None:
    """The agents' latest focus snapshot: a take-over or hand-off is a snapshot from a human
    naming the owner, which says nothing about the work (the owner is shown on its own)."""
    return (
        Frame.objects.filter(coordination=coordination, type="focus_snapshot")
        .exclude(sender__startswith=HUMAN_PREFIX)
        .order_by("-seq")
        .first()
    )
