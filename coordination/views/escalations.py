"""The escalation inbox and the decision on an escalation."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from coordination import attention, decisions, events, present, proposals
from coordination.models import Escalation
from coordination.views.access import ConsoleRequest, require_perm


@require_GET
@require_perm("watch")
def escalation_inbox(request: ConsoleRequest) -> HttpResponse:
    cards = present.inbox()
    return render(
        request,
        "coordination/escalation_inbox.html",
        {
            "escalations": cards,
            "shown": present.shown(cards),
            "can_decide": request.user.has_perm("coordination.decide"),
            "next": reverse("escalation-inbox"),
            "nav": "inbox",
        },
    )


@require_GET
@require_perm("watch")
def escalation_detail(request: ConsoleRequest, pk: int) -> HttpResponse:
    """One escalation on a page of its own, to link and share; live like the inbox."""
    card = present.EscalationCard(get_object_or_404(present.escalations_with_context(), pk=pk))
    return render(
        request,
        "coordination/escalation_detail.html",
        {
            "card": card,
            "shown": present.shown([card]),
            "can_decide": request.user.has_perm("coordination.decide"),
            "next": reverse("escalation-detail", args=[pk]),
            "nav": "inbox",
        },
    )


@require_POST
@require_perm("decide")
def on_it(request: ConsoleRequest, pk: int) -> HttpResponse:
    """ "I'm on it": shown on the card to every other operator for a while."""
    escalation = get_object_or_404(Escalation, pk=pk)
    decided = not escalation.is_pending  # a page older than the decision: nothing to be on
    if not decided:
        attention.on_it(escalation, request.user)
    if not request.htmx:
        return redirect(_back(request, escalation))
    people = attention.seen_by(attention.people([pk])[pk], request.user)
    context = {"card_pk": pk, "people": people, "user": request.user, "can_decide": True}
    return render(
        request,
        "coordination/escalation_card.html#people",
        {**context, "next": "", "decided": decided},
    )


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[(decisions.APPROVE, "Approve"), (decisions.REJECT, "Reject")]
    )
    note = forms.CharField(required=False, max_length=2000, strip=True)
    instructions = forms.CharField(required=False, max_length=4000, strip=True)
    # The proposal's arguments as JSON; an approver may edit them before approving.
    amended_args = forms.CharField(required=False, max_length=20000, strip=True)

    def clean_amended_args(self) -> dict[str, Any] | None:
        try:
            return proposals.parse_args(self.cleaned_data.get("amended_args", ""))
        except proposals.InvalidArgs as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # A rejection stops the agent: it needs to know why, so the note is required.
        # An approval may go without one.
        if data.get("verdict") == decisions.REJECT and not data.get("note"):
            self.add_error("note", "Say why you reject: the agent receives this note.")
        if data.get("verdict") == decisions.REJECT:
            # Nothing runs on a rejection: its arguments cannot be wrong.
            self.errors.pop("amended_args", None)
            data["amended_args"] = None
        return data


def _lost(escalation: Escalation, verdict: str) -> str:
    """Someone decided first: say who, when, and that this operator's decision went nowhere."""
    who = escalation.decided_by_name or "someone else"
    at = (
        timezone.localtime(escalation.decided_at).strftime("%H:%M %Z")
        if escalation.decided_at
        else ""
    )
    mine = "approval" if verdict == decisions.APPROVE else "rejection"
    return f"{who} {escalation.status} this{' at ' + at if at else ''}; your {mine} was not sent."


def _back(request: ConsoleRequest, escalation: Escalation) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("coordination-detail", args=[escalation.coordination.key])


@require_POST
@require_perm("decide")
def decide(request: ConsoleRequest, pk: int) -> HttpResponse:
    escalation = get_object_or_404(Escalation.objects.select_related("coordination"), pk=pk)
    form = DecisionForm(request.POST)
    message, lost = "", False
    if form.is_valid():
        with events.collecting():
            result = decisions.decide(
                escalation.pk,
                request.user,
                form.cleaned_data["verdict"],
                form.cleaned_data["note"],
                instructions=form.cleaned_data["instructions"],
                amended_args=form.cleaned_data["amended_args"],
            )
        message = result.message
        lost = not result.decided and not result.escalation.is_pending
        if lost:
            message = _lost(result.escalation, form.cleaned_data["verdict"])
        if not request.htmx:
            level = messages.SUCCESS if result.decided else messages.WARNING
            messages.add_message(request, level, f"Escalation {escalation.pk}: {message}")
            return redirect(_back(request, escalation))
        if not lost:
            form = DecisionForm()
    elif not request.htmx:
        for error in form.errors.values():
            messages.error(request, f"Escalation {escalation.pk}: {' '.join(map(str, error))}")
        return redirect(_back(request, escalation))
    card = present.EscalationCard(present.escalations_with_context().get(pk=escalation.pk))
    return render(
        request,
        "coordination/escalation_card.html#state",
        {
            "card": card,
            "form": form,
            "message": message,
            "lost": lost,
            # Where focus goes after the swap: the invalid field, else the card's state.
            "focus": f"note-{pk}" if form.errors else f"escalation-{pk}-state",
            "can_decide": True,
            "next": request.POST.get("next", ""),
        },
    )
