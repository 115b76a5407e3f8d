"""Prepared reads (coordination.models.prepared) return what the ORM's queryset returns: the
same rows, the same values, select_related's objects attached, whatever values are bound, on
each database (PostgreSQL's backend wraps some integers in a type of its own, SQLite does not).

They serve the live pages (the rows after a seq, the coordination with its owner, who looks
at the cards, for every state a page shows) and a batch's locks (one statement per length of
its list of keys)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordination import attention, statements, timeline
from coordination.models import Agent, Attention, Coordination, Escalation, Frame, Orientation
from tests.factories import KEY, frame, seed, send

pytestmark = pytest.mark.django_db


def _fill(agents) -> Coordination:
    """A chain with orientations (select_related's object) and frames without one."""
    for n in range(6):
        send(agents.triage, frame(f"o-{n}", "orientation", {"role": "triage", "intent": f"s{n}"}))
        send(agents.metrics, frame(f"r-{n}", "route_request", {"target": "triage-agent"}))
    return Coordination.objects.get(key=KEY)


def _orm_after(pk: int, seq: int, limit: int) -> list[Frame]:
    frames = Frame.objects.filter(coordination_id=pk, seq__gt=seq).select_related("orientation")
    return list(frames.order_by("seq")[:limit])


def _fields(found: Frame) -> tuple:
    orientation = found.orientation
    return (
        found.pk,
        found.seq,
        found.ltp_id,
        found.raw,
        found.received_at,
        found.warnings,
        None if orientation is None else (orientation.pk, orientation.ltp_id, orientation.raw),
    )


@pytest.mark.parametrize("limit", [1, 5, 50])
def test_the_rows_after_a_seq_are_the_querysets_rows(agents, limit):
    coordination = _fill(agents)
    everything = timeline.Filter()
    for seq in (-1, 0, 3, coordination.head_seq - 1, coordination.head_seq):
        prepared, last = timeline.after(coordination.pk, seq, everything, limit)
        expected = _orm_after(coordination.pk, seq, limit)
        assert [_fields(f) for f in prepared] == [_fields(f) for f in expected]
        assert last == (expected[-1].seq if expected else seq)
    # Another coordination's rows are not this one's: the coordination is bound too.
    assert timeline.after(coordination.pk + 1000, -1, everything, limit) == ([], -1)


def test_the_orientation_of_each_row_comes_with_it(agents):
    coordination = _fill(agents)
    frames, _ = timeline.after(coordination.pk, -1, timeline.Filter(), 50)
    with CaptureQueriesContext(connection) as queries:
        oriented = [f.orientation.ltp_id for f in frames if f.orientation_id is not None]
    assert oriented and len(queries) == 0


def test_the_coordination_comes_with_its_owner(agents, operators):
    coordination = _fill(agents)
    assert timeline.with_owner(coordination.pk).owner is None
    coordination.owner = operators["alice"]
    coordination.save(update_fields=["owner"])
    with CaptureQueriesContext(connection) as queries:
        found = timeline.with_owner(coordination.pk)
        assert (found.key, found.head_seq, found.owner.username) == (
            KEY,
            coordination.head_seq,
            "alice",
        )
    assert len(queries) == 1
    with pytest.raises(Coordination.DoesNotExist):
        timeline.with_owner(coordination.pk + 1000)


def test_a_batchs_locks_read_each_list_of_keys_whatever_its_length(agents):
    coordination = _fill(agents)
    more = [Agent.create_with_token(f"agent-{n}", scope="*")[0] for n in range(4)]
    every = [agents.triage, agents.metrics, *more]
    for count in (1, 2, 3, 6, 2, 1):  # lengths again: each length's statement is kept
        pks = sorted(a.pk for a in every[:count])
        assert [a.pk for a in statements.locked_agents(pks)] == pks
        assert [a.name for a in statements.locked_agents(pks)] == [
            a.name for a in Agent.objects.filter(pk__in=pks).order_by("pk")
        ]
    for names in ([KEY], ["no-such", KEY], ["no-such"], []):
        found, seen = statements.locked_coordinations(names, [agents.triage.pk, agents.metrics.pk])
        assert [c.key for c in found] == ([KEY] if KEY in names else [])
    found, seen = statements.locked_coordinations([KEY], [agents.triage.pk, more[0].pk])
    orientation = Orientation.objects.get(coordination=coordination, agent=agents.triage)
    mine = seen[(coordination.pk, agents.triage.pk)]
    assert (mine.participant, mine.orientation_pk, mine.orientation_frame) == (
        True,
        orientation.pk,
        orientation.frame_id,
    )
    stranger = seen[(coordination.pk, more[0].pk)]
    assert (stranger.participant, stranger.orientation_pk) == (False, None)
    assert not mine.imported


def test_who_looks_at_the_cards_is_what_the_orm_reads(agents, operators):
    escalation = seed(agents)
    other = Escalation.objects.get(pk=escalation.pk)
    other.pk, other.branch_index = None, 99  # a second branch of the same answer
    other.save()
    attention.looking(operators["alice"], [escalation.pk, other.pk])
    attention.on_it(escalation, operators["bob"])
    attention.looking(operators["bob"], [other.pk])
    Attention.objects.filter(user=operators["alice"], escalation=other).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    def orm(pks: list[int]) -> tuple:
        rows = Attention.objects.filter(escalation_id__in=pks, expires_at__gt=timezone.now())
        ordered = rows.order_by("escalation_id", "kind", "user_id")
        return tuple(ordered.values_list("escalation_id", "kind", "user_id"))

    for pks in ([escalation.pk], [escalation.pk, other.pk], [other.pk], [other.pk + 1000]):
        assert attention.fingerprint(pks) == orm(pks)
    assert len(attention.fingerprint([escalation.pk, other.pk])) == 3  # alice's on `other` expired
    assert attention.fingerprint([]) == ()
