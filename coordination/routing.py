"""Who handles a need: the routing table, presence, and the fallback ladder.

A request goes to its target, or to the agents the routing table lists for its need, in
order, skipping agents that are offline or silent and agents already tried. When nobody is
left it becomes an escalation. Every step is a route_response frame from ltpdash in the
chain, with the reason in its branch ("metrics-agent offline since 12:03:10; routed to
metrics-agent-b"), delivered to the requester as well.

Critical actions (PROTOCOL §5) are never routed automatically: they always become an
escalation carrying the LTP rule id.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from coordination import decisions
from coordination.events import Events
from coordination.models import (
    LTPDASH,
    Agent,
    Delivery,
    Frame,
    Presence,
    RequestStatus,
    RouteRequest,
    RoutingChange,
    RoutingRule,
)
from coordination.presence import describe
from coordination.schemas import emitted

HUMAN = "human"
NO_CAPABILITY = "AGENTS.CRIT.NO_CAPABILITY"
NO_ADMISSIBILITY = "AGENTS.CRIT.NO_ADMISSIBILITY"


def critical_rule(agent: Agent, action: str) -> str | None:
    """The LTP rule id that blocks `action`, or None when it is not a critical action."""
    if action.strip().lower() not in {a.lower() for a in settings.CRITICAL_ACTIONS}:
        return None
    if f"CAPABILITY_{action.strip().upper()}" not in {str(c).upper() for c in agent.capabilities}:
        return NO_CAPABILITY
    # The agent may hold the capability, but ltpdash's policy admits no critical action on
    # an agent's word alone: a human decides.
    return NO_ADMISSIBILITY


# --- the routing table -------------------------------------------------------------------------


def agent_names(text: str) -> list[str]:
    """'metrics-agent, metrics-agent-b' → ['metrics-agent', 'metrics-agent-b'], deduplicated."""
    names = [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]
    return list(dict.fromkeys(names))


def rule_for(need: str) -> RoutingRule | None:
    # Needs are matched without regard to case or surrounding space: "Metrics " is "metrics".
    need = need.strip()
    return RoutingRule.objects.filter(need__iexact=need).first() if need else None


def set_rule(need: str, agents: list[str], *, user=None, by: str = "") -> RoutingChange | None:
    """Create or replace the rule for `need` and record who did it; None when it already
    said exactly that. Read fresh by every dispatch: the next request follows it without a
    restart."""
    need = need.strip()
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


def delete_rule(need: str, *, user=None, by: str = "") -> RoutingChange | None:
    """Remove the rule for `need`; None when there was none."""
    with transaction.atomic():
        rule = RoutingRule.objects.select_for_update().filter(need__iexact=need.strip()).first()
        if rule is None:
            return None
        rule.delete()
        return _record(rule.need, list(rule.agents), None, user, by)


def _record(need, before, after, user, by) -> RoutingChange:
    return RoutingChange.objects.create(
        need=need,
        before=before,
        after=after,
        changed_by=user,
        changed_by_name=by or (user.get_username() if user else ""),
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
    rule = rule_for(request.need)
    if rule is not None:
        names.extend(rule.agents)
    seen: set[str] = set()
    return [n for n in names if not (n in seen or seen.add(n)) and n != request.requester.name]


# --- the ladder --------------------------------------------------------------------------------


def dispatch(request: RouteRequest, events: Events, why_previous: str = "") -> None:
    """Route `request` to the next agent that can take it, or escalate. The caller holds the
    coordination's row lock inside a transaction."""
    rule_id = critical_rule(request.requester, request.action) if request.action else None
    if rule_id is not None:
        _escalate(
            request,
            f"critical action {request.action!r} needs a human decision ({rule_id})",
            events,
            rule_id=rule_id,
        )
        return
    if request.target == HUMAN:
        _escalate(request, request.need or "the agent asked for a human", events)
        return

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
        _assign(request, agent, reasons, events)
        return
    if not reasons:
        reasons.append(
            f"no route for need {request.need!r}" if request.need else "no target and no need"
        )
    _escalate(request, "; ".join([*reasons, "no fallback left; escalated to humans"]), events)


def _assign(request: RouteRequest, agent: Agent, reasons: list[str], events: Events) -> None:
    now = timezone.now()
    request.status = RequestStatus.OPEN
    request.assigned_to = agent
    request.tried = [*request.tried, agent.name]
    request.deadline = now + timedelta(seconds=settings.ROUTE_TIMEOUT)
    # updated_at doubles as "assigned at": deadline - updated_at is how long we waited.
    request.updated_at = now
    request.save(update_fields=["status", "assigned_to", "tried", "deadline", "updated_at"])
    deliver(request.frame, agent, events)
    if reasons:
        emit(
            request,
            "fallback",
            "; ".join([*reasons, f"routed to {agent.name}"]),
            events,
            target=agent.name,
        )
    elif agent.name != request.target:
        # Routed by the table rather than named by the requester: worth a frame saying so.
        reason = f"need {request.need!r} routed to {agent.name} by the routing table"
        emit(request, "route", reason, events, target=agent.name)


def _escalate(request: RouteRequest, reason: str, events: Events, rule_id: str = "") -> None:
    request.status = RequestStatus.ESCALATED
    request.assigned_to = None
    request.deadline = None
    request.updated_at = timezone.now()
    request.save(update_fields=["status", "assigned_to", "tried", "deadline", "updated_at"])
    frame = emit(request, "escalate", reason, events, rule_id=rule_id)
    decisions.open_escalation(
        coordination=request.coordination,
        agent=request.requester,
        frame=frame,
        reason=reason,
        events=events,
        request=request,
        action=request.action,
        rule_id=rule_id,
        asked_frame_id=request.ltp_id,
    )


def emit(request: RouteRequest, action: str, reason: str, events: Events, **branch) -> Frame:
    """Append ltpdash's routing step to the chain and tell the requester."""
    branch = {"action": action, "reason": reason, **{k: v for k, v in branch.items() if v}}
    frame = emitted(
        "route_response",
        {"in_reply_to": request.ltp_id, "branches": [branch]},
        to=request.requester.name,
    )
    coordination = request.coordination
    stored = coordination.append(frame, sender=LTPDASH, direction="out")
    events.frame_appended(coordination.pk, stored.seq)
    deliver(stored, request.requester, events)
    return stored


def answered(request: RouteRequest, response: Frame, events: Events) -> None:
    """An agent answered: forward the answer; an open request is closed by it.

    A late answer (from an agent the request already moved away from, or after it was
    escalated) is still forwarded, since it may help, but it does not reopen anything."""
    RouteRequest.objects.filter(pk=request.pk, status=RequestStatus.OPEN).update(
        status=RequestStatus.ANSWERED,
        response_frame=response,
        deadline=None,
        updated_at=timezone.now(),
    )
    deliver(response, request.requester, events)


def timed_out(request: RouteRequest, events: Events) -> None:
    """No answer before the deadline: next rung of the ladder (the sweeper calls this, with
    the coordination locked and the request claimed)."""
    who = request.assigned_to.name if request.assigned_to else "the assigned agent"
    waited = round((request.deadline - request.updated_at).total_seconds())
    dispatch(request, events, why_previous=f"no response from {who} within {waited}s")


def deliver(frame: Frame, agent: Agent, events: Events) -> None:
    """Owe `frame` to `agent`: stored in the outbox first, then pushed after commit."""
    delivery, created = Delivery.objects.get_or_create(
        frame=frame, agent=agent, defaults={"ltp_id": frame.frame_id}
    )
    if created:
        events.deliver(agent.pk, delivery.pk, frame.raw)
