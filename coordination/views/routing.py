"""The routing table (admins): who handles a need, in order of preference.

Every change goes through `routing.set_rule` / `routing.delete_rule`, which record who made
it; dispatch reads the table fresh, so the next request follows a change at once.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from coordination import routing
from coordination.models import Agent, RoutingChange, RoutingRule
from coordination.views.access import ConsoleRequest, require_perm

RECENT_CHANGES = 20


class RoutingRuleForm(forms.Form):
    need = forms.CharField(max_length=200, strip=True)
    agents = forms.CharField(
        max_length=2000, help_text="Agent names, comma-separated, preferred first."
    )

    def clean_agents(self) -> list[str]:
        names = routing.agent_names(self.cleaned_data["agents"])
        try:
            routing.check_agents(names)
        except routing.InvalidRule as exc:
            raise forms.ValidationError(str(exc)) from None
        return names


def _render(
    request: ConsoleRequest, form: RoutingRuleForm, status: int = 200, notice: str = ""
) -> HttpResponse:
    # htmx swaps the body partial; a plain request gets the whole page.
    template = "coordination/routing.html" + ("#routing-body" if request.htmx else "")
    context = {
        "rules": RoutingRule.objects.order_by("need"),
        "changes": RoutingChange.objects.select_related("changed_by")[:RECENT_CHANGES],
        "agent_names": Agent.objects.order_by("name").values_list("name", flat=True),
        "form": form,
        "notice": notice,
        "nav": "routing",
    }
    return render(request, template, context, status=status)


@require_GET
@require_perm("manage_routing")
def routing_table(request: ConsoleRequest) -> HttpResponse:
    return _render(request, RoutingRuleForm())


@require_POST
@require_perm("manage_routing")
def rule_save(request: ConsoleRequest) -> HttpResponse:
    form = RoutingRuleForm(request.POST)
    if not form.is_valid():
        # htmx only swaps 2xx answers; the errors are in the fragment either way.
        return _render(request, form, status=200 if request.htmx else 400)
    need, names = form.cleaned_data["need"], form.cleaned_data["agents"]
    changed = routing.set_rule(need, names, user=request.user)
    notice = f"{need} → {', '.join(names)}: {'saved' if changed else 'unchanged'}."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("routing-table")
    return _render(request, RoutingRuleForm(), notice=notice)


@require_POST
@require_perm("manage_routing")
def rule_delete(request: ConsoleRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(RoutingRule, pk=pk)
    routing.delete_rule(rule.need, user=request.user)
    notice = f"The rule for {rule.need} was deleted."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("routing-table")
    return _render(request, RoutingRuleForm(), notice=notice)
