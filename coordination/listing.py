"""The coordination list with what an operator narrows it by: open / resolved / needs me,
a search over ids and state, a sort, and the columns that say where to look first (the
nearest escalation deadline, agents gone silent). Everything comes from the URL, so the live
socket renders the same view the page was loaded with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import F, Min, Q, QuerySet

from coordination.models import (
    Agent,
    Coordination,
    CoordinationStatus,
    EscalationStatus,
    Frame,
    Presence,
)
from coordination.present import LIST_PAGE, CoordinationRow, coordination_rows

SHOWS = {"all": "All", "open": "Open", "resolved": "Resolved", "mine": "Needs me"}
SORTS = {
    "activity": "Last activity",
    "deadline": "Nearest deadline",
    "key": "Coordination id",
}


@dataclass(frozen=True)
class ListQuery:
    show: str = "all"
    q: str = ""
    sort: str = "activity"
    page: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListQuery:
        show = query.get("show", "all")
        sort = query.get("sort", "activity")
        return cls(
            show=show if show in SHOWS else "all",
            q=query.get("q", "").strip()[:200],
            sort=sort if sort in SORTS else "activity",
            page=query.get("page"),
        )

    def url(self, **changes: Any) -> str:
        values = {"show": self.show, "q": self.q, "sort": self.sort} | changes
        defaults = {"show": "all", "q": "", "sort": "activity"}
        return urlencode({k: v for k, v in values.items() if v and v != defaults.get(k)})


def _needs(user: User) -> Q:
    """What waits for `user`: escalations they may decide, coordinations they own."""
    if user.has_perm("coordination.decide_tier2"):
        decidable = Q(escalations__status=EscalationStatus.PENDING)
    elif user.has_perm("coordination.decide"):
        decidable = Q(escalations__status=EscalationStatus.PENDING, escalations__tier=1)
    else:
        decidable = Q(pk__in=[])
    return decidable | Q(owner_id=user.pk, status=CoordinationStatus.OPEN)


def coordinations(query: ListQuery, user: User) -> QuerySet[Coordination]:
    found = Coordination.objects.select_related("owner").annotate(
        nearest=Min("escalations__deadline", filter=Q(escalations__status=EscalationStatus.PENDING))
    )
    if query.show == "open":
        found = found.filter(status=CoordinationStatus.OPEN)
    elif query.show == "resolved":
        found = found.exclude(status=CoordinationStatus.OPEN)
    elif query.show == "mine":
        found = found.filter(pk__in=Coordination.objects.filter(_needs(user)).values("pk"))
    if query.q:
        found = found.filter(Q(key__icontains=query.q) | Q(state__icontains=query.q))
    if query.sort == "deadline":
        return found.order_by(F("nearest").asc(nulls_last=True), "-last_activity", "pk")
    if query.sort == "key":
        return found.order_by("key", "pk")
    return found.order_by("-last_activity", "pk")


@dataclass(frozen=True)
class ListRow:
    row: CoordinationRow
    nearest: datetime | None
    silent: list[str]


def _silent(pks: list[int]) -> dict[int, set[str]]:
    """Agents of each coordination that are connected but silent now."""
    quiet = Agent.objects.filter(presence=Presence.SILENT)
    found: dict[int, set[str]] = {pk: set() for pk in pks}
    for pk, name in (
        Frame.objects.filter(coordination_id__in=pks, agent__in=quiet)
        .order_by()
        .values_list("coordination_id", "agent__name")
        .distinct()
    ):
        found[pk].add(name)
    return found


def list_context(query: ListQuery, user: User) -> dict[str, Any]:
    page = Paginator(coordinations(query, user), LIST_PAGE).get_page(query.page)
    items = list(page.object_list)
    silent = _silent([c.pk for c in items])
    rows = [
        ListRow(
            row, getattr(row.coordination, "nearest", None), sorted(silent[row.coordination.pk])
        )
        for row in coordination_rows(items)
    ]
    return {
        "page": page,
        "rows": rows,
        "query": query,
        "shows": SHOWS,
        "sorts": SORTS,
        "nav": "coordinations",
    }
