"""Taking a coordination over and handing it to another operator."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from coordination import decisions, events, present
from coordination.models import Agent, Coordination, is_imported
from coordination.views.access import ConsoleRequest, require_perm


class HandoffForm(forms.Form):
    to = forms.ModelChoiceField(
        queryset=present.operators_who_decide(), to_field_name="username", label="Hand off to"
    )
    note = forms.CharField(required=False, max_length=2000, strip=True)


READ_ONLY = "This coordination was imported from a trace; it is read-only and has no owner."


def _done(
    request: ConsoleRequest, coordination: Coordination, message: str, ok: bool = True
) -> HttpResponse:
    if not request.htmx:
        messages.add_message(request, messages.SUCCESS if ok else messages.ERROR, message)
        return redirect("coordination-detail", coordination.key)
    coordination = Coordination.objects.select_related("owner").get(pk=coordination.pk)
    return render(
        request,
        "coordination/coordination_detail.html#ownership",
        {
            "coordination": coordination,
            "can_take_over": True,
            "operators": present.operators_who_decide(),
            "message": message,
            "ok": ok,
        },
    )


def _ownable(
    view: Callable[[ConsoleRequest, Coordination], HttpResponse],
) -> Callable[[ConsoleRequest, str], HttpResponse]:
    """The view gets the coordination `key`, unless it was imported: read-only, it has no
    owner to change."""

    @wraps(view)
    def wrapper(request: ConsoleRequest, key: str) -> HttpResponse:
        coordination = get_object_or_404(Coordination, key=key)
        if is_imported(coordination.pk):
            return _done(request, coordination, READ_ONLY, ok=False)
        return view(request, coordination)

    return wrapper


@require_POST
@require_perm("take_over")
@_ownable
def take_over(request: ConsoleRequest, coordination: Coordination) -> HttpResponse:
    with events.collecting():
        note = request.POST.get("note", "")[:2000]
        decisions.handoff(coordination.pk, request.user, request.user, note=note)
    return _done(request, coordination, f"You own {coordination.key} now.")


@require_POST
@require_perm("take_over")
@_ownable
def hand_off(request: ConsoleRequest, coordination: Coordination) -> HttpResponse:
    form = HandoffForm(request.POST)
    if not form.is_valid():
        return _done(
            request, coordination, "Choose an operator who can decide escalations.", ok=False
        )
    to = form.cleaned_data["to"]
    with events.collecting():
        decisions.handoff(coordination.pk, request.user, to, note=form.cleaned_data["note"])
    return _done(request, coordination, f"Handed {coordination.key} to {to.username}.")


@require_POST
@require_perm("take_over")
def admit(request: ConsoleRequest, key: str) -> HttpResponse:
    """Let an agent speak in this coordination (it was neither routed into it nor scoped)."""
    coordination = get_object_or_404(Coordination, key=key)
    name = request.POST.get("agent", "").strip()
    agent = Agent.objects.filter(name=name).first()
    if agent is None:
        return _done(request, coordination, f"No agent named {name!r}.", ok=False)
    with events.collecting():
        admitted = decisions.admit(coordination.pk, agent, request.user)
    if not admitted:
        return _done(request, coordination, f"{agent.name} already takes part.", ok=False)
    return _done(request, coordination, f"{agent.name} may now speak in {coordination.key}.")
