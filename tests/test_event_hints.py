"""Hints ("look again") are registered once per transaction and group, never lost: a batch of
frames to one coordination wakes its pages once, and a savepoint rolled back alone takes only
its own callbacks with it."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from coordination import events

pytestmark = pytest.mark.django_db(transaction=True)


class _Undone(Exception):
    pass


def _sent(block) -> list[tuple[str, str]]:
    """(group, type) of each event the transactions in `block` sent on commit."""
    with events._gathered() as gathered:
        block()
    return [(group, message["type"]) for group, message in gathered]


def test_a_batch_of_frames_to_one_coordination_registers_its_hints_once():
    def batch() -> None:
        with transaction.atomic():
            for seq in range(1, 51):
                events.coordination_changed(7, seq)
            events.frame_owed(3, 11, "{}")
            assert len(connection.run_on_commit) == 3  # two hints and the delivery

    assert _sent(batch) == [
        ("coordination.7", "coordination.changed"),
        (events.DASHBOARD, "dashboard.changed"),
        ("agent.3", "agent.deliver"),
    ]


def test_each_transaction_sends_its_own_hint():
    def two() -> None:
        for seq in (1, 2):
            with transaction.atomic():
                events.coordination_changed(7, seq)

    assert _sent(two).count(("coordination.7", "coordination.changed")) == 2


def test_a_hint_from_a_savepoint_rolled_back_does_not_hide_the_same_hint_after_it():
    def rolled_back_first() -> None:
        with transaction.atomic():
            with pytest.raises(_Undone), transaction.atomic():
                events.coordination_changed(7, 1)
                raise _Undone
            events.coordination_changed(7, 2)

    assert ("coordination.7", "coordination.changed") in _sent(rolled_back_first)


def test_a_savepoint_rolled_back_keeps_the_hint_registered_before_it():
    def rolled_back_after() -> None:
        with transaction.atomic():
            events.coordination_changed(7, 1)
            with pytest.raises(_Undone), transaction.atomic():
                events.coordination_changed(7, 2)
                raise _Undone

    assert _sent(rolled_back_after).count(("coordination.7", "coordination.changed")) == 1


def test_a_hint_outside_a_transaction_goes_at_once_each_time():
    def autocommit() -> None:
        events.dashboard_changed(1)
        events.dashboard_changed(1)

    assert _sent(autocommit) == [(events.DASHBOARD, "dashboard.changed")] * 2
