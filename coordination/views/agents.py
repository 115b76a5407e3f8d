"""Agents and their tokens (admins). A token is shown once, when it is made."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from coordination.models import Act, Agent, OperatorAct, check_agent_name
from coordination.views.access import ConsoleRequest, require_perm


class AgentForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="A letter or digit, then letters, digits, '.', '_' or '-'.",
    )
    role = forms.CharField(required=False, max_length=200)
    scope = forms.CharField(
        required=False,
        max_length=500,
        help_text="Coordinations it may speak in without being routed or admitted: "
        "comma-separated patterns such as incident-*.",
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        try:
            check_agent_name(name)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return name


class ScopeForm(forms.Form):
    scope = forms.CharField(required=False, max_length=500)


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
                form.cleaned_data["name"], form.cleaned_data["role"], form.cleaned_data["scope"]
            )
            OperatorAct.record(request.user, Act.TOKEN_CREATED, agent.name, scope=agent.scope)
    except IntegrityError:
        form.add_error("name", "An agent with this name exists.")
        return _page(request, form, status=400)
    return _page(request, AgentForm(), token=token, token_agent=agent)


@require_POST
@require_perm("manage_agents")
def agent_rotate(request: ConsoleRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    with transaction.atomic():
        token = agent.rotate_token()
        OperatorAct.record(request.user, Act.TOKEN_ROTATED, agent.name)
    return _page(request, AgentForm(), token=token, token_agent=agent, rotated=True)


@require_POST
@require_perm("manage_agents")
def agent_revoke(request: ConsoleRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    with transaction.atomic():
        agent.revoke_token()
        OperatorAct.record(request.user, Act.TOKEN_REVOKED, agent.name)
    notice = f"{agent.name}'s token is revoked; its open sockets close now. Rotate to reissue."
    return _page(request, AgentForm(), notice=notice)


@require_POST
@require_perm("manage_agents")
def agent_scope(request: ConsoleRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    form = ScopeForm(request.POST)
    if not form.is_valid():
        return _page(request, AgentForm(), status=400, notice="A scope is at most 500 characters.")
    with transaction.atomic():
        before, agent.scope = agent.scope, form.cleaned_data["scope"].strip()
        agent.save(update_fields=["scope"])
        OperatorAct.record(
            request.user, Act.SCOPE_CHANGED, agent.name, before=before, after=agent.scope
        )
    return _page(
        request,
        AgentForm(),
        notice=f"{agent.name} may now speak in: {agent.scope or 'only where routed or admitted'}.",
    )
