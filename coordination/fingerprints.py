"""What a live page reads on every wake to tell whether anything it shows may have changed:
a few counts and latest times, by part (see `coordination.live`), in one statement.

Every frame wakes the pages of its coordination, and the dashboard's: this runs for each of
them (shared by the viewers woken together). Built by the ORM, the dozen aggregates cost more
to compile than SQLite or PostgreSQL take to answer them, so they are one statement of scalar
subqueries, each on an indexed foreign key (or a small table), written once per process.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection

from coordination.models import (
    Agent,
    Approval,
    Coordination,
    Escalation,
    EscalationStatus,
    Orientation,
    RequestStatus,
    RouteRequest,
)
from coordination.models.prepared import table

Fingerprint = dict[str, Any]


def _escalations(where: str) -> str:
    """The state of the escalations `where` selects: count, newest, pending, latest decision,
    tiers, votes (six columns; `where` takes one parameter, the pending status next)."""
    e, a = table(Escalation), table(Approval)
    return f"""
        (SELECT COUNT(*) FROM {e} WHERE {where}),
        (SELECT MAX(id) FROM {e} WHERE {where}),
        (SELECT COUNT(*) FROM {e} WHERE {where} AND status = %s),
        (SELECT MAX(decided_at) FROM {e} WHERE {where}),
        (SELECT SUM(tier) FROM {e} WHERE {where}),
        (SELECT COUNT(*) FROM {a} WHERE escalation_id IN (SELECT id FROM {e} WHERE {where}))"""  # noqa: S608


def _every() -> str:
    """The nav's counter: pending escalations anywhere, with the newest and the latest
    decision (so the state never recurs, see `live.Block`), and the agents' presence."""
    e, ag = table(Escalation), table(Agent)
    return f"""
        (SELECT COUNT(*) FROM {e} WHERE status = %s),
        (SELECT MAX(id) FROM {e}),
        (SELECT MAX(decided_at) FROM {e}),
        (SELECT MAX(presence_changed_at) FROM {ag}),
        (SELECT COUNT(*) FROM {ag})"""  # noqa: S608


@cache
def _coordination_sql() -> str:
    r, o = table(RouteRequest), table(Orientation)
    here = "coordination_id = %s"
    return f"""SELECT c.head_seq, c.owner_id, c.state, {_escalations(here)}, {_every()},
        (SELECT COUNT(*) FROM {r} WHERE {here}),
        (SELECT COUNT(*) FROM {r} WHERE {here} AND status = %s),
        (SELECT MAX(updated_at) FROM {r} WHERE {here}),
        (SELECT COUNT(*) FROM {o} WHERE {here}),
        (SELECT MAX(frame_id) FROM {o} WHERE {here})
        FROM {table(Coordination)} c WHERE c.id = %s"""  # noqa: S608


def _escalation_params(*where: Any) -> list[Any]:
    """Parameters for `_escalations`: each subquery's `where`, the pending status after the
    third."""
    pending = EscalationStatus.PENDING.value
    return [*where, *where, *where, pending, *where, *where, *where]


def coordination(pk: int) -> Fingerprint:
    """A coordination page's parts: its chain head and owner, its escalations and votes, the
    nav's counter, the agents' presence, its route requests, its agents' orientations."""
    pending = EscalationStatus.PENDING.value
    params = [*_escalation_params(pk), pending]
    params += [pk, pk, RequestStatus.OPEN.value, pk, pk, pk, pk]
    with connection.cursor() as cursor:
        cursor.execute(_coordination_sql(), params)
        row = cursor.fetchone()
    if row is None:
        raise Coordination.DoesNotExist(pk)
    return {
        "chain": tuple(row[0:3]),
        "escalations": tuple(row[3:9]),
        "pending": tuple(row[9:12]),
        "presence": tuple(row[12:14]),
        "requests": tuple(row[14:17]),
        "orientations": tuple(row[17:19]),
    }


@cache
def _escalations_sql(where: str) -> str:
    return f"SELECT {_escalations(where)}, {_every()}"


def escalations(pk: int | None = None) -> Fingerprint:
    """The parts of a page of escalations (every one, or the one `pk`): their state, the
    nav's counter, the agents' presence."""
    where, param = ("1 = %s", 1) if pk is None else ("id = %s", pk)
    params = [*_escalation_params(param), EscalationStatus.PENDING.value]
    with connection.cursor() as cursor:
        cursor.execute(_escalations_sql(where), params)
        row = cursor.fetchone()
    assert row is not None
    return {
        "escalations": tuple(row[0:6]),
        "pending": tuple(row[6:9]),
        "presence": tuple(row[9:11]),
    }
