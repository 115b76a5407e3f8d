"""Who handles a need: the routing table, presence, and the fallback ladder.

A request goes to its target, or to the agents the routing table lists for its need, in
order, skipping agents that are offline or silent and agents already tried. When nobody is
left it becomes an escalation. Every step is a route_response frame from ltpdash in the
chain, with the reason in its branch, delivered to the requester as well.

Critical actions (PROTOCOL §5) are never routed automatically: they always become an
escalation carrying the LTP rule id.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from coordination import decisions
from coordination.events import Events
from coordination.models import (
    LTPDASH,
    Agent,
    Coordination,
    Delivery,
    Frame,
    Presence,
    RequestStatus,
    RouteRequest,
    RoutingRule,
)
from coordination.presence import describe
from coordination.schemas import emitted

HUMAN = "human"


def critical_rule(agent: Agent, action: str) -> str | None:
    """The LTP rule id that blocks `action`, or None when it is not a critical action."""
    if action.lower() not in {a.lower() for a in settings.CRITICAL_ACTIONS}:
        return None
    if f"CAPABILITY_{action.upper()}" not in {str(c).upper() for c in agent.capabilities}:
        return "AGENTS.CRIT.NO_CAPABILITY"
    # The agent may hold the capability, but ltpdash's policy admits no critical action on
    # an agent's word alone: a human decides.
    return "AGENTS.CRIT.NO_ADMISSIBILITY"


def ladder(request: RouteRequest) -> list[str]:
    """Agent names that may handle `request`, preferred first."""
    names: list[str] = []
    if request.target and request.target != HUMAN:
        names.append(request.target)
        for rule in RoutingRule.objects.all():
            if request.target in rule.agents:
                names.extend(rule.agents[rule.agents.index(request.target) + 1 :])
    if request.need:
        rule = RoutingRule.objects.filter(need__iexact=request.need.strip()).first()
        if rule is not None:
            names.extend(rule.agents)
    seen: set[str] = set()
    return [n for n in names if not (n in seen or seen.add(n)) and n != request.requester.name]


def dispatch(request: RouteRequest, events: Events, why_previous: str = "") -> None:
    """Route `request` to the next agent that can take it, or escalate. Caller holds the
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
    candidates = ladder(request)
    agents = {a.name: a for a in Agent.objects.filter(name__in=candidates)}
    for name in candidates:
        if name in request.tried:
            continue
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
    if not candidates:
        reasons.append(
            f"no route for need {request.need!r}" if request.need else "no target and no need"
        )
    _escalate(request, "; ".join([*reasons, "no fallback left; escalated to humans"]), events)


def _assign(request: RouteRequest, agent: Agent, reasons: list[str], events: Events) -> None:
    now = timezone.now()
    request.assigned_to = agent
    request.tried = [*request.tried, agent.name]
    request.deadline = now + timedelta(seconds=settings.ROUTE_TIMEOUT)
    request.updated_at = now
    request.save(update_fields=["assigned_to", "tried", "deadline", "updated_at"])
    deliver(request.frame, agent, events)
    if reasons or agent.name != request.target:
        # Only a detour is worth a frame: the plain case is the request itself.
        reason = "; ".join([*reasons, f"routed to {agent.name}"])
        emit(request, "fallback", reason, events, target=agent.name)


def _escalate(request: RouteRequest, reason: str, events: Events, rule_id: str = "") -> None:
    request.status = RequestStatus.ESCALATED
    request.assigned_to = None
    request.deadline = None
    request.updated_at = timezone.now()
    request.save(update_fields=["status", "assigned_to", "deadline", "updated_at"])
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
    """The assigned agent answered: close the request and forward the answer."""
    RouteRequest.objects.filter(pk=request.pk).update(
        status=RequestStatus.ANSWERED,
        response_frame=response,
        deadline=None,
        updated_at=timezone.now(),
    )
    deliver(response, request.requester, events)


def timed_out(request: RouteRequest, events: Events) -> None:
    """No answer before the deadline: next rung of the ladder (the sweeper calls this)."""
    who = request.assigned_to.name if request.assigned_to else "the assigned agent"
    waited = settings.ROUTE_TIMEOUT
    dispatch(request, events, why_previous=f"no response from {who} within {waited}s")


def deliver(frame: Frame, agent: Agent, events: Events) -> None:
    """Owe `frame` to `agent`: stored in the outbox first, then pushed after commit."""
    delivery, created = Delivery.objects.get_or_create(
        frame=frame, agent=agent, defaults={"ltp_id": frame.frame_id}
    )
    if created:
        events.deliver(agent.pk, delivery.pk, frame.raw)


def coordination_for_update(request: RouteRequest) -> Coordination:
    return Coordination.objects.select_for_update().get(pk=request.coordination_id)
