"""Who is on an escalation right now: operators looking at its card, and "I'm on it".

Small, expiring state (one `Attention` row per operator, escalation and kind): a live page
renews its operator's LOOKING rows while its socket is open, so a closed tab drops out within
`LOOKING_SECONDS`; "I'm on it" lasts `ON_IT_SECONDS` unless said again. Nothing here is part
of the chain: it is a courtesy between operators, not an audit record.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from coordination.models import Attention, AttentionKind, Escalation
from coordination.models.prepared import marks, table

LOOKING_SECONDS = 15
ON_IT_SECONDS = 10 * 60


@dataclass
class People:
    """Usernames, sorted: who said they are on it, who is looking."""

    on_it: list[str] = field(default_factory=list)
    looking: list[str] = field(default_factory=list)


def _renew(user: User, escalation_pks: Collection[int], kind: str, seconds: int) -> None:
    now = timezone.now()
    expires = now + timedelta(seconds=seconds)
    # Renew only rows past half their life: a page asking every few seconds writes rarely.
    fresh = set(
        Attention.objects.filter(
            user=user,
            kind=kind,
            escalation_id__in=escalation_pks,
            expires_at__gt=now + timedelta(seconds=seconds / 2),
        ).values_list("escalation_id", flat=True)
    )
    stale = set(escalation_pks) - fresh
    if stale:
        # Forget long expired rows here, where a page writes anyway (not on each read).
        Attention.objects.filter(expires_at__lte=now - timedelta(minutes=5)).delete()
    for pk in stale:
        try:
            with transaction.atomic():
                Attention.objects.update_or_create(
                    escalation_id=pk, user=user, kind=kind, defaults={"expires_at": expires}
                )
        except IntegrityError:
            pass  # the same operator's other tab created it a moment ago: it is fresh


def looking(user: User, escalation_pks: Collection[int]) -> None:
    """`user`'s page shows these cards now."""
    if escalation_pks:
        _renew(user, escalation_pks, AttentionKind.LOOKING, LOOKING_SECONDS)


def on_it(escalation: Escalation, user: User) -> None:
    """`user` says they handle this escalation (shown to every other operator)."""
    _renew(user, [escalation.pk], AttentionKind.ON_IT, ON_IT_SECONDS)


def people(escalation_pks: Collection[int]) -> dict[int, People]:
    """Who is on each of these escalations now (every pk has an entry)."""
    now = timezone.now()
    result = {pk: People() for pk in escalation_pks}
    rows = (
        Attention.objects.filter(escalation_id__in=escalation_pks, expires_at__gt=now)
        .order_by("user__username")
        .values_list("escalation_id", "kind", "user__username")
    )
    for pk, kind, name in rows:
        entry = result[pk]
        (entry.on_it if kind == AttentionKind.ON_IT else entry.looking).append(name)
    return result


def seen_by(people: People, user: User) -> People:
    """`people` as `user` sees them: others looking, not themselves."""
    name = user.get_username()
    return People(people.on_it, [n for n in people.looking if n != name])


def fingerprint(escalation_pks: Collection[int]) -> tuple[tuple[int, str, int], ...]:
    """Changes only when someone arrives, leaves, or says they are on it. A read only: live
    pages ask it on every wake, beside the agents' writes."""
    if not escalation_pks:
        return ()
    # One plain statement: built by the ORM, it cost more to compile than to run (a tenth of
    # the live pages' time in bench_live, a page showing escalation cards at 100 frames/s).
    sql = (
        f"SELECT escalation_id, kind, user_id FROM {table(Attention)}"  # noqa: S608
        f" WHERE escalation_id IN ({marks(len(escalation_pks))}) AND expires_at > %s"
        " ORDER BY escalation_id, kind, user_id"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [*escalation_pks, now])
        return tuple(tuple(row) for row in cursor.fetchall())
