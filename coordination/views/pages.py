"""Pages for watching: the coordination list, a coordination, its timeline, its trace."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from coordination import integrity, present
from coordination.models import Coordination
from coordination.rehydrate import rehydrate
from coordination.trace import trace_response
from coordination.views.access import ConsoleRequest, require_perm


@require_GET
@require_perm("watch")
def coordination_list(request: ConsoleRequest) -> HttpResponse:
    return render(
        request,
        "coordination/coordination_list.html",
        present.list_context(request.GET.get("page")),
    )


def _before(request: ConsoleRequest) -> int | None:
    try:
        return int(request.GET["before"])
    except (KeyError, ValueError):
        return None


def detail_context(
    coordination: Coordination, user: User, before: int | None = None
) -> dict[str, Any]:
    cards = present.coordination_escalations(coordination.pk)
    return {
        "coordination": coordination,
        "timeline": present.timeline_page(coordination.pk, before),
        "before": before,
        "agent_cards": present.agent_cards(coordination),
        "open_requests": present.open_requests(coordination),
        "escalations": cards,
        "shown": present.shown(cards),
        "can_decide": user.has_perm("coordination.decide"),
        "can_take_over": user.has_perm("coordination.take_over"),
        "operators": present.operators_who_decide()
        if user.has_perm("coordination.take_over")
        else [],
        "next": reverse("coordination-detail", args=[coordination.key]),
        "nav": "coordinations",
    }


def _coordination(key: str) -> Coordination:
    return get_object_or_404(
        Coordination.objects.select_related("owner", "latest_snapshot"), key=key
    )


@require_GET
@require_perm("watch")
def coordination_detail(request: ConsoleRequest, key: str) -> HttpResponse:
    coordination = _coordination(key)
    context = detail_context(coordination, request.user, _before(request))
    context["context_json"] = present.as_json(rehydrate(coordination, recent=0))
    context.update(integrity.page_context(coordination))
    if context["trace_import"] is not None:  # read-only: nobody takes an imported one over
        context["can_take_over"] = False
    return render(request, "coordination/coordination_detail.html", context)


@require_GET
@require_perm("watch")
def coordination_timeline(request: ConsoleRequest, key: str) -> HttpResponse:
    """The next (older) page of the timeline. htmx gets the rows; a plain link, the page."""
    if not request.htmx:
        return coordination_detail(request, key)
    coordination = get_object_or_404(Coordination.objects.only("pk", "key"), key=key)
    return render(
        request,
        "coordination/coordination_detail.html#timeline-page",
        {
            "coordination": coordination,
            "timeline": present.timeline_page(coordination.pk, _before(request)),
        },
    )


@require_GET
@require_perm("watch")
def coordination_trace(request: ConsoleRequest, key: str) -> StreamingHttpResponse:
    coordination = get_object_or_404(Coordination, key=key)
    return trace_response(coordination.key, coordination.trace_lines())
