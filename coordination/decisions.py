"""All that needs a human: critical actions, escalations, approve / reject, quorum, expiry,
hand-offs.

A request is routed (`route`) unless a human must decide it: a critical action (PROTOCOL §5)
never reaches an agent on another agent's word alone, a request to `human` asks for one, and
a request nobody can take ends with one. Every decision goes through `decide`. The decision
is a frame in the chain (a route_response from `human:<username>`, PROTOCOL §4), owed to the
agent through the outbox before anything is sent, so it survives disconnects and restarts and
reaches the agent exactly once in effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from coordination import events, notifications, outbox, routing
from coordination.actions import action_key, keys
from coordination.models import (
    HUMAN_PREFIX,
    Act,
    Agent,
    Approval,
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
    OperatorAct,
    Orientation,
    ParticipantVia,
    RequestStatus,
    RouteRequest,
)
from coordination.proposals import decision_args, escalation_fields
from coordination.schemas import LTPDASH, RouteRequestView, RouteResponseView

APPROVE = "approve"
REJECT = "reject"
# PROTOCOL: actions no agent takes on its own word alone (LTPDASH_EXTRA_CRITICAL_ACTIONS
# adds to them).
LTP_CRITICAL_ACTIONS = (
    "transfer_money",
    "place_order",
    "send_message",
    "delete_data",
    "grant_access",
    "modify_system",
    "execute_code",
)
NO_CAPABILITY = "AGENTS.CRIT.NO_CAPABILITY"
NO_ADMISSIBILITY = "AGENTS.CRIT.NO_ADMISSIBILITY"

# --- what needs a human ----------------------------------------------------------------------


def critical_rule(agent: Agent, action: str) -> str | None:
    """The LTP rule id that blocks `action`, or None when it is not a critical action.

    Compared by meaning (`actions.action_key`), never by spelling: `Transfer-Money` with a
    zero-width space or a Cyrillic letter in it is `transfer_money`."""
    key = action_key(action)
    if not key or key not in keys([*LTP_CRITICAL_ACTIONS, *settings.EXTRA_CRITICAL_ACTIONS]):
        return None
    if action_key(f"capability_{action}") not in keys(map(str, agent.capabilities)):
        return NO_CAPABILITY
    # The agent may hold the capability, but ltpdash's policy admits no critical action on
    # an agent's word alone: a human decides.
    return NO_ADMISSIBILITY


def route(request: RouteRequest, why_previous: str = "", action: str | None = None) -> None:
    """Send `request` down its fallback ladder, or to humans when it needs one. `action` is
    the action as sent (the stored one is cut at 200 characters, and padding must not hide
    a critical action). The caller holds the coordination's row lock inside a transaction."""
    action = request.action if action is None else action
    rule_id = critical_rule(request.requester, action) if action else None
    if rule_id is not None:
        reason = f"critical action {request.action!r} needs a human decision ({rule_id})"
        escalate_request(request, reason, rule_id=rule_id)
    elif request.target == routing.HUMAN:
        escalate_request(request, request.need or "the agent asked for a human")
    else:
        nobody = routing.next_agent(request, why_previous)
        if nobody is not None:
            escalate_request(request, nobody)


def timed_out(request: RouteRequest) -> None:
    """No answer before the deadline: next rung of the ladder (the sweeper calls this, with
    the coordination locked and the request claimed)."""
    who = request.assigned_to.name if request.assigned_to else "the assigned agent"
    assert request.deadline is not None  # claimed on its deadline
    waited = round((request.deadline - request.updated_at).total_seconds())
    route(request, why_previous=f"no response from {who} within {waited}s")


def escalate_request(request: RouteRequest, reason: str, rule_id: str = "") -> Escalation:
    request.status = RequestStatus.ESCALATED
    request.assigned_to = None
    request.deadline = None
    request.updated_at = timezone.now()
    request.save(update_fields=["status", "assigned_to", "tried", "deadline", "updated_at"])
    frame = routing.step(request, "escalate", reason, rule_id=rule_id)
    return open_escalation(
        agent=request.requester,
        frame=frame,
        reason=reason,
        request=request,
        action=request.action,
        rule_id=rule_id,
        asked_frame_id=request.ltp_id,
    )


def open_escalation(
    *,
    agent: Agent,
    frame: Frame,
    reason: str,
    request: RouteRequest | None = None,
    action: str = "",
    rule_id: str = "",
    branch_index: int = -1,
    asked_frame_id: str | None = None,
    held_frame: Frame | None = None,
) -> Escalation:
    coordination = frame.coordination
    assert coordination is not None  # escalations come from chain entries
    escalation = Escalation.objects.create(
        coordination=coordination,
        agent=agent,
        frame=frame,
        route_request=request,
        branch_index=branch_index,
        in_reply_to=asked_frame_id or frame.ltp_id,
        reason=reason,
        action=action[:200],
        rule_id=rule_id,
        **escalation_fields(frame, branch_index, request),
        required_approvals=settings.CRITICAL_APPROVALS if rule_id else 1,
        deadline=coordination.escalation_deadline(),
        held_frame=held_frame,
    )
    notifications.escalation_opened(escalation)
    events.dashboard_changed(coordination.pk)
    return escalation


def requested_action(agent: Agent, view: RouteRequestView) -> str:
    """The action a request asks for: its `action`/`targetState`, else the first of its
    branches that names a critical action (which then needs a human like the request)."""
    if critical_rule(agent, view.wanted_action) is None:
        for branch in view.branches:
            if critical_rule(agent, branch.named_action) is not None:
                return branch.named_action
    return view.wanted_action


def answer(
    agent: Agent, stored: Frame, view: RouteResponseView, request: RouteRequest | None
) -> None:
    """A peer answered. An `escalate` branch asks for a human; a branch naming a critical
    action needs one, and the answer is held until humans approve: the requester never
    holds a critical action that nobody approved."""
    held = False
    for index, branch in enumerate(view.branches):
        named = branch.named_action
        rule_id = critical_rule(agent, named) if named else None
        if branch.action != "escalate" and rule_id is None:
            continue
        reason = branch.reason or (f"critical action {named!r}" if rule_id else "")
        open_escalation(
            agent=agent,
            frame=stored,
            reason=reason or "escalated without a reason",
            request=request,
            action=named,
            rule_id=rule_id or "",
            branch_index=index,
            held_frame=stored if rule_id and request is not None else None,
        )
        held = held or bool(rule_id)
    if request is not None:
        routing.answered(request, stored, forward=not held)


def _release_held(escalation: Escalation) -> None:
    """Deliver a held answer once every escalation holding it is approved."""
    held = escalation.held_frame
    request = escalation.route_request
    if held is None or request is None:
        return
    holds = Escalation.objects.filter(held_frame=held).exclude(pk=escalation.pk)
    if not holds.exclude(status=EscalationStatus.APPROVED).exists():
        outbox.owe(held, request.requester)


# --- deciding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionResult:
    escalation: Escalation
    decided: bool  # this call made the final decision
    message: str  # what to tell the operator


def decide(
    escalation_pk: int,
    user: User,
    verdict: str,
    note: str,
    instructions: str = "",
    amended_args: dict[str, Any] | None = None,
) -> DecisionResult:
    """Approve or reject. Exactly one final decision per escalation: the conditional update
    from pending is the referee when two operators decide at once; the loser is told who won."""
    if verdict not in {APPROVE, REJECT}:
        raise ValueError(f"verdict must be approve or reject, not {verdict!r}")
    with transaction.atomic():
        escalation = (
            # Lock only the escalation row: PostgreSQL refuses FOR UPDATE on the nullable
            # side of the outer join to route_request.
            Escalation.objects.select_for_update(of=("self",), no_key=True)
            .select_related("coordination", "agent", "route_request__requester")
            .get(pk=escalation_pk)
        )
        if escalation.status != EscalationStatus.PENDING:
            return _already(escalation)
        if escalation.tier >= 2 and not user.has_perm("coordination.decide_tier2"):
            # Past its first deadline the escalation belongs to the next tier (the admins).
            return DecisionResult(
                escalation,
                decided=False,
                message="This escalation moved to the admins (tier 2) at its deadline; "
                "only an admin can decide it now.",
            )
        approvers = [user.get_username()]
        if verdict == APPROVE and escalation.required_approvals > 1:
            approvers = _vote(escalation, user, note)
            if len(approvers) < escalation.required_approvals:
                return DecisionResult(
                    escalation,
                    decided=False,
                    message=f"{len(approvers)} of {escalation.required_approvals} approvals "
                    "recorded; another approver is needed.",
                )
        return _finalise(
            escalation,
            verdict=verdict,
            note=note,
            instructions=instructions,
            user=user,
            approvers=approvers,
            amended_args=amended_args,
        )


def _vote(escalation: Escalation, user: User, note: str) -> list[str]:
    """Record `user`'s approval (once per operator); the approvers so far, in order."""
    Approval.objects.get_or_create(escalation=escalation, user=user, defaults={"note": note})
    events.coordination_changed(escalation.coordination_id)
    return list(
        escalation.approvals.order_by("created_at").values_list("user__username", flat=True)
    )


def _already(escalation: Escalation) -> DecisionResult:
    who = escalation.decided_by_name or "someone else"
    return DecisionResult(
        escalation, decided=False, message=f"Already {escalation.status} by {who}."
    )


def _finalise(
    escalation: Escalation,
    *,
    verdict: str,
    note: str,
    instructions: str,
    user: User | None,
    approvers: list[str],
    amended_args: dict[str, Any] | None = None,
) -> DecisionResult:
    """Record the decision (if it is still pending) and tell the agent, and the requester
    whose request it settles."""
    name = user.get_username() if user is not None else LTPDASH
    args = decision_args(escalation, verdict, amended_args)  # original args, amended ones
    status = EscalationStatus.APPROVED if verdict == APPROVE else EscalationStatus.REJECTED
    won = Escalation.objects.filter(pk=escalation.pk, status=EscalationStatus.PENDING).update(
        status=status,
        decided_by=user,
        decided_by_name=name,
        decided_at=timezone.now(),
        note=note,
        instructions=instructions,
        amended_args=args.get("amended_args"),
    )
    if not won:
        escalation.refresh_from_db()
        return _already(escalation)
    if user is not None:
        OperatorAct.record(
            user,
            Act.DECIDED,
            f"escalation {escalation.pk}: {verdict}",
            coordination=escalation.coordination,
            note=note,
        )
    branch: dict[str, Any] = {"action": verdict, "reason": note, "decided_by": name, **args}
    if len(approvers) > 1:
        branch["approvers"] = approvers
    stored = _tell_decision(escalation, branch, instructions, user)
    Escalation.objects.filter(pk=escalation.pk).update(decision_frame=stored)
    escalation.refresh_from_db()
    if status == EscalationStatus.APPROVED:
        _release_held(escalation)
    notifications.escalation_decided(escalation)
    return DecisionResult(escalation, decided=True, message=f"{status.label.capitalize()}.")


def _tell_decision(
    escalation: Escalation, branch: dict[str, Any], instructions: str, user: User | None
) -> Frame:
    """The decision as a frame in the chain (from `human:<user>`, or ltpdash for a default),
    owed to the agent that escalated and to the requester whose request it settles."""
    payload: dict[str, Any] = {
        "in_reply_to": escalation.in_reply_to,
        "branches": [branch],
        "escalation": escalation.pk,
    }
    if instructions:
        payload["instructions"] = instructions
    recipients = [escalation.agent]
    request = escalation.route_request
    if request is not None and request.requester_id != escalation.agent_id:
        recipients.append(request.requester)
    return outbox.emit(
        Coordination.locked(escalation.coordination_id),
        "route_response",
        payload,
        to=recipients,
        sender=HUMAN_PREFIX + user.get_username() if user is not None else LTPDASH,
        frame_id=f"decision-{escalation.pk}",
        addressee=escalation.agent.name,
    )


def expire(escalation: Escalation) -> bool:
    """At the deadline: the configured default (reject, the safe one) or the next tier
    (admins), with the reason in the chain and the agent told either way.

    Claimed by a conditional update on the deadline the caller read, so two sweepers act
    once. The escalation row is taken before the coordination's, the order `decide` uses,
    so an operator deciding at the same moment waits instead of deadlocking."""
    assert escalation.deadline is not None  # read from the sweeper's query
    waited = round((escalation.deadline - escalation.created_at).total_seconds())
    with transaction.atomic():
        if settings.ESCALATION_DEFAULT == "next_tier" and escalation.tier == 1:
            return _move_to_tier2(escalation, waited)
        return _reject_by_default(escalation, waited)


def _move_to_tier2(escalation: Escalation, waited: int) -> bool:
    coordination = Coordination.objects.get(pk=escalation.coordination_id)
    claimed = Escalation.objects.filter(
        pk=escalation.pk, status=EscalationStatus.PENDING, deadline=escalation.deadline
    ).update(tier=2, deadline=coordination.escalation_deadline())
    if not claimed:
        return False
    # The agent learns its question now waits for the admins; their decision (or the tier-2
    # default) follows as usual.
    outbox.emit(
        Coordination.locked(coordination.pk),
        "route_response",
        {
            "in_reply_to": escalation.in_reply_to,
            "branches": [
                {
                    "action": "escalate",
                    "reason": f"no decision within {waited}s; moved to tier 2 (admins)",
                    "tier": 2,
                }
            ],
            "escalation": escalation.pk,
        },
        to=[escalation.agent],
        addressee=escalation.agent.name,
    )
    notifications.escalation_moved(escalation)
    return True


def _reject_by_default(escalation: Escalation, waited: int) -> bool:
    claimed = Escalation.objects.filter(
        pk=escalation.pk, status=EscalationStatus.PENDING, deadline=escalation.deadline
    ).update(deadline=None)
    if not claimed:
        return False
    escalation = Escalation.objects.select_related(
        "coordination", "agent", "route_request__requester"
    ).get(pk=escalation.pk)
    result = _finalise(
        escalation,
        verdict=REJECT,
        note=f"no decision within {waited}s; default applied: reject",
        instructions="",
        user=None,
        approvers=[LTPDASH],
    )
    return result.decided


# --- hand-offs ------------------------------------------------------------------------------------


def agents_in(coordination: Coordination) -> list[Agent]:
    ids = set(
        Orientation.objects.filter(coordination=coordination).values_list("agent_id", flat=True)
    )
    ids |= set(
        Frame.objects.filter(coordination=coordination, agent__isnull=False)
        .values_list("agent_id", flat=True)
        .distinct()
    )
    return list(Agent.objects.filter(pk__in=ids))


def handoff(coordination_pk: int, by_user: User, to_user: User, note: str = "") -> Coordination:
    """Give a coordination to `to_user` (taking over is handing it to yourself). Agents get a
    focus_snapshot naming the new owner; the chain records it."""
    by, to = by_user.get_username(), to_user.get_username()
    with transaction.atomic():
        coordination = Coordination.locked(coordination_pk)
        previous = coordination.owner.get_username() if coordination.owner else None
        coordination.owner = to_user
        verb = "took over" if by_user == to_user else f"handed off to {to}"
        stored = outbox.emit(
            coordination,
            "focus_snapshot",
            {
                "coordination_id": coordination.key,
                "state": coordination.state,
                "owner": f"{HUMAN_PREFIX}{to}",
                "handoff": {"from": previous, "to": to, "by": by},
                "reason": f"{by} {verb}" + (f": {note}" if note else ""),
            },
            to=agents_in(coordination),
            sender=HUMAN_PREFIX + by,
        )
        coordination.latest_snapshot = stored
        coordination.save(update_fields=["owner", "latest_snapshot"])
        act = Act.TOOK_OVER if by_user == to_user else Act.HANDED_OFF
        OperatorAct.record(by_user, act, coordination.key, coordination=coordination, to=to)
        notifications.coordination_taken_over(coordination, by_user, to_user, note)
    return coordination


def admit(coordination_pk: int, agent: Agent, by: User | None, by_name: str = "") -> bool:
    """An operator lets `agent` speak in a coordination; the chain records who admitted whom.
    False when it already was a participant (nothing recorded then)."""
    name = by.get_username() if by is not None else by_name
    with transaction.atomic():
        coordination = Coordination.locked(coordination_pk)
        if not coordination.join(agent, ParticipantVia.ADMITTED, by=by):
            return False
        outbox.emit(
            coordination,
            "participant",
            {"agent": agent.name, "via": ParticipantVia.ADMITTED, "by": name},
            to=[agent],
            sender=HUMAN_PREFIX + name,
        )
        OperatorAct.record(by, Act.ADMITTED, agent.name, coordination=coordination, by=name)
    return True


# --- notes ----------------------------------------------------------------------------------------

NOTE = "note"


def note(coordination_pk: int, user: User, text: str) -> Frame:
    """A human's note on the timeline: a frame in the chain from `human:<user>` that decides
    nothing and is owed to no agent (a type of ltpdash's own, which agents ignore)."""
    with transaction.atomic():
        coordination = Coordination.locked(coordination_pk)
        return outbox.emit(
            coordination,
            NOTE,
            {"coordination_id": coordination.key, "text": text},
            sender=HUMAN_PREFIX + user.get_username(),
        )
