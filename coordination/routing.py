"""Who handles a need: the routing table and the fallback ladder.

A request goes to its target, or to the agents the routing table lists for its need, in
order, skipping agents that are offline or silent and agents already tried. Every step is a
route_response frame from ltpdash in the chain, with the reason in its branch
("metrics-agent offline since 12:03:10; routed to metrics-agent-b"), owed to the requester.
When nobody is left, `next_agent` says why, and the caller (decisions) escalates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from coordination import outbox
from coordination.models import (
    Act,
    Agent,
    Frame,
    OperatorAct,
    ParticipantVia,
    Presence,
    RequestStatus,
    RouteRequest,
    RoutingChange,
    RoutingRule,
)
from coordination.presence import describe

# A request addressed to this target asks for a human, not an agent.
HUMAN = "human"


# --- the routing table -------------------------------------------------------------------------


def agent_names(text: str) -> list[str]:
    """'metrics-agent, metrics-agent-b' → ['metrics-agent', 'metrics-agent-b'], deduplicated."""
    names = [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]
    return list(dict.fromkeys(names))


class InvalidRule(ValueError):
    """A routing rule that would not work: the message says why, for a page or a command."""


def check_agents(names: list[str]) -> None:
    """Refuse a rule with no agents or an agent that does not exist: a typo here would
    silently turn a fallback into an escalation."""
    if not names:
        raise InvalidRule("Name at least one agent.")
    unknown = sorted(set(names) - set(Agent.objects.values_list("name", flat=True)))
    if unknown:
        raise InvalidRule(f"No agent named {', '.join(unknown)}.")


def rule_for(need: str) -> RoutingRule | None:
    # Needs are matched without regard to case or surrounding space: "Metrics " is "metrics".
    need = need.strip()
    return RoutingRule.objects.filter(need__iexact=need).first() if need else None


def set_rule(
    need: str, agents: list[str], *, user: User | None = None, by: str = ""
) -> RoutingChange | None:
    """Create or replace the rule for `need` and record who did it; None when it already
    said exactly that. Read fresh by every dispatch: the next request follows it without a
    restart. Raises InvalidRule for a rule that would not work."""
    need = need.strip()
    if not need:
        raise InvalidRule("The need must not be empty.")
    check_agents(agents)
    with transaction.atomic():
        rule = RoutingRule.objects.select_for_update().filter(need__iexact=need).first()
        before = list(rule.agents) if rule else None
        if before == list(agents):
            return None
        if rule is None:
            rule = RoutingRule(need=need)
        rule.agents, rule.updated_by, rule.updated_at = list(agents), user, timezone.now()
        rule.save()
        return _record(rule.need, before, rule.agents, user, by)


def delete_rule(need: str, *, user: User | None = None, by: str = "") -> RoutingChange | None:
    """Remove the rule for `need`; None when there was none."""
    with transaction.atomic():
        rule = RoutingRule.objects.select_for_update().filter(need__iexact=need.strip()).first()
        if rule is None:
            return None
        rule.delete()
        return _record(rule.need, list(rule.agents), None, user, by)


def _record(
    need: str,
    before: list[str] | None,
    after: list[str] | None,
    user: User | None,
    by: str,
) -> RoutingChange:
    name = by or (user.get_username() if user else "")
    OperatorAct.record(user, Act.ROUTING_CHANGED, need, by=name, before=before, after=after)
    return RoutingChange.objects.create(
        need=need, before=before, after=after, changed_by=user, changed_by_name=name
    )


def ladder(request: RouteRequest) -> list[str]:
    """Agent names that may handle `request`, preferred first: the target, then the other
    agents of every rule that lists the target, then the agents of the rule for its need."""
    names: list[str] = []
    if request.target and request.target != HUMAN:
        names.append(request.target)
        # The table is a handful of rows; JSON containment is not portable to SQLite.
        for rule in RoutingRule.objects.all():
            if request.target in rule.agents:
                names.extend(rule.agents)
    need_rule = rule_for(request.need)
    if need_rule is not None:
        names.extend(need_rule.agents)
    return [n for n in dict.fromkeys(names) if n != request.requester.name]


# --- the ladder --------------------------------------------------------------------------------


def next_agent(request: RouteRequest, why_previous: str = "") -> str | None:
    """Hand `request` to the next agent on its ladder that is online: None once assigned,
    else the reason nobody could take it (the caller escalates with it). The caller holds the
    coordination's row lock inside a transaction."""
    reasons = [why_previous] if why_previous else []
    candidates = [name for name in ladder(request) if name not in request.tried]
    agents = {a.name: a for a in Agent.objects.filter(name__in=candidates)}
    for name in candidates:
        agent = agents.get(name)
        if agent is None:
            reasons.append(f"no agent named {name}")
            continue
        if agent.presence != Presence.ONLINE:
            reasons.append(describe(agent))
            request.tried = [*request.tried, name]
            continue
        _assign(request, agent, reasons)
        return None
    if not reasons:
        reasons.append(
            f"no route for need {request.need!r}" if request.need else "no target and no need"
        )
    return "; ".join([*reasons, "no fallback left; escalated to humans"])


def _assign(request: RouteRequest, agent: Agent, reasons: list[str]) -> None:
    now = timezone.now()
    request.status = RequestStatus.OPEN
    request.assigned_to = agent
    request.tried = [*request.tried, agent.name]
    request.deadline = now + timedelta(seconds=settings.ROUTE_TIMEOUT)
    # updated_at doubles as "assigned at": deadline - updated_at is how long we waited.
    request.updated_at = now
    request.save(update_fields=["status", "assigned_to", "tried", "deadline", "updated_at"])
    request.coordination.join(agent, ParticipantVia.ROUTED)
    outbox.owe(request.frame, agent)
    if reasons:
        step(
            request, "fallback", "; ".join([*reasons, f"routed to {agent.name}"]), target=agent.name
        )
    elif agent.name != request.target:
        # Routed by the table rather than named by the requester: worth a frame saying so.
        reason = f"need {request.need!r} routed to {agent.name} by the routing table"
        step(request, "route", reason, target=agent.name)


def step(request: RouteRequest, action: str, reason: str, **branch: Any) -> Frame:
    """Append ltpdash's routing step (a route_response whose one branch says what happened
    and why) to the chain, owed to the requester."""
    return outbox.emit(
        request.coordination,
        "route_response",
        {
            "in_reply_to": request.ltp_id,
            "branches": [
                {"action": action, "reason": reason, **{k: v for k, v in branch.items() if v}}
            ],
        },
        to=[request.requester],
        addressee=request.requester.name,
    )


def answered(request: RouteRequest, response: Frame, forward: bool = True) -> None:
    """The assigned agent answered: the request is closed by it, and the answer forwarded
    to the requester (unless it is held for a human decision)."""
    RouteRequest.objects.filter(pk=request.pk, status=RequestStatus.OPEN).update(
        status=RequestStatus.ANSWERED,
        response_frame=response,
        deadline=None,
        updated_at=timezone.now(),
    )
    if forward:
        outbox.owe(response, request.requester)
