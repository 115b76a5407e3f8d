"""Pages for watching: the coordination list, a coordination, its timeline, its trace."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from coordination import decisions, events, integrity, listing, present, timeline
from coordination.models import Coordination
from coordination.rehydrate import rehydrate
from coordination.trace import trace_response
from coordination.views.access import ConsoleRequest, require_perm


@require_GET
@require_perm("watch")
def coordination_list(request: ConsoleRequest) -> HttpResponse:
    query = listing.ListQuery.from_query(request.GET)
    return render(
        request, "coordination/coordination_list.html", listing.list_context(query, request.user)
    )


def _before(request: ConsoleRequest) -> int | None:
    try:
        return int(request.GET["before"])
    except (KeyError, ValueError):
        return None


def detail_context(
    coordination: Coordination,
    user: User,
    before: int | None = None,
    only: timeline.Filter | None = None,
) -> dict[str, Any]:
    cards = present.coordination_escalations(coordination.pk)
    only = only or timeline.Filter()
    senders, types = timeline.choices(coordination.pk)
    snapshot = timeline.agents_snapshot(coordination)
    return {
        "coordination": coordination,
        "timeline": timeline.page(coordination.pk, before, only),
        "only": only,
        "senders": senders,
        "types": types,
        "snapshot": snapshot,
        "snapshot_fields": present.fields(snapshot),
        "pending_cards": [card for card in cards if card.escalation.is_pending],
        "decided": [card for card in cards if not card.escalation.is_pending],
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
    only = timeline.Filter.from_query(request.GET)
    context = detail_context(coordination, request.user, _before(request), only)
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
    only = timeline.Filter.from_query(request.GET)
    return render(
        request,
        "coordination/coordination_detail.html#timeline-page",
        {
            "coordination": coordination,
            "only": only,
            "timeline": timeline.page(coordination.pk, _before(request), only),
        },
    )


class NoteForm(forms.Form):
    text = forms.CharField(max_length=2000, strip=True)


@require_POST
@require_perm("decide")
def coordination_note(request: ConsoleRequest, key: str) -> HttpResponse:
    """A note on the timeline from the operator, deciding nothing (a frame in the chain)."""
    coordination = get_object_or_404(Coordination.objects.only("pk", "key"), key=key)
    form = NoteForm(request.POST)
    if form.is_valid():
        with events.collecting():
            decisions.note(coordination.pk, request.user, form.cleaned_data["text"])
        messages.success(request, "Note added to the timeline.")
    else:
        messages.error(request, "Write the note first.")
    return redirect("coordination-detail", key=coordination.key)


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the icon."""
    return HttpResponsePermanentRedirect(static("ltpdash/favicon.svg"))


@require_GET
@require_perm("watch")
def coordination_trace(request: ConsoleRequest, key: str) -> StreamingHttpResponse:
    coordination = get_object_or_404(Coordination, key=key)
    return trace_response(coordination.key, coordination.trace_lines())
