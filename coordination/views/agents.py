"""Agents and their tokens (admins). A token is shown once, when it is made."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from coordination.models import Agent
from coordination.views.access import ConsoleRequest, require_perm


class AgentForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$",
        max_length=200,
        error_messages={"invalid": "Letters, digits, '.', '_', ':' and '-' only."},
    )
    role = forms.CharField(required=False, max_length=200)


def _page(
    request: ConsoleRequest, form: AgentForm, status: int = 200, **extra: Any
) -> HttpResponse:
    return render(
        request,
        "coordination/agents.html",
        {"agents": Agent.objects.order_by("name"), "form": form, "nav": "agents", **extra},
        status=status,
    )


@require_GET
@require_perm("manage_agents")
def agent_list(request: ConsoleRequest) -> HttpResponse:
    return _page(request, AgentForm())


@require_POST
@require_perm("manage_agents")
def agent_create(request: ConsoleRequest) -> HttpResponse:
    # Answered with the page itself (no redirect): the token must not travel in a URL or a
    # session, and it cannot be shown again.
    form = AgentForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        with transaction.atomic():
            agent, token = Agent.create_with_token(
                form.cleaned_data["name"], form.cleaned_data["role"]
            )
    except IntegrityError:
        form.add_error("name", "An agent with this name exists.")
        return _page(request, form, status=400)
    return _page(request, AgentForm(), token=token, token_agent=agent)


@require_POST
@require_perm("manage_agents")
def agent_rotate(request: ConsoleRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    token = agent.rotate_token()
    return _page(request, AgentForm(), token=token, token_agent=agent, rotated=True)
