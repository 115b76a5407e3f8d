"""Escalations and what humans decide about them: open, approve / reject, expire, hand off.

Every decision goes through `decide`. The decision is a frame in the chain (a route_response
from `human:<username>`, PROTOCOL §4), stored in the outbox for the agent before anything is
sent, so it survives disconnects and restarts and reaches the agent exactly once in effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from coordination import notifications
from coordination.events import DASHBOARD, Events
from coordination.models import (
    HUMAN_PREFIX,
    LTPDASH,
    Agent,
    Approval,
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
    Orientation,
    RouteRequest,
)
from coordination.schemas import emitted

APPROVE = "approve"
REJECT = "reject"


def open_escalation(
    *,
    coordination: Coordination,
    agent: Agent,
    frame: Frame,
    reason: str,
    events: Events,
    request: RouteRequest | None = None,
    action: str = "",
    rule_id: str = "",
    branch_index: int = -1,
    asked_frame_id: str | None = None,
) -> Escalation:
    critical = bool(rule_id)
    escalation = Escalation.objects.create(
        coordination=coordination,
        agent=agent,
        frame=frame,
        route_request=request,
        branch_index=branch_index,
        in_reply_to=asked_frame_id or frame.frame_id,
        reason=reason,
        action=action[:200],
        rule_id=rule_id,
        required_approvals=settings.CRITICAL_APPROVALS if critical else 1,
        deadline=coordination.escalation_deadline(),
    )
    notifications.escalation_opened(escalation)
    events.publish(DASHBOARD, {"type": "dashboard.changed", "coordination": coordination.pk})
    return escalation


def open_from_branches(agent, coordination, stored: Frame, view, request, events) -> None:
    """An `escalate` branch asks for a human; a branch naming a critical action needs one."""
    from coordination.routing import critical_rule

    for index, branch in enumerate(view.branches):
        extra = branch.model_extra or {}
        named = branch.action if branch.action != "escalate" else ""
        named = named or (
            extra.get("targetState") if isinstance(extra.get("targetState"), str) else ""
        )
        rule_id = critical_rule(agent, named) if named else None
        if branch.action != "escalate" and rule_id is None:
            continue
        reason = branch.reason or (f"critical action {named!r}" if rule_id else "")
        open_escalation(
            coordination=coordination,
            agent=agent,
            frame=stored,
            reason=reason or "escalated without a reason",
            events=events,
            request=request,
            action=named or "",
            rule_id=rule_id or "",
            branch_index=index,
        )


@dataclass(frozen=True)
class DecisionResult:
    escalation: Escalation
    decided: bool  # this call made the final decision
    message: str  # what to tell the operator

    @property
    def refused(self) -> bool:
        return not self.decided and self.escalation.status != EscalationStatus.PENDING


def decide(
    escalation_pk: int,
    user,
    verdict: str,
    note: str,
    events: Events,
    instructions: str = "",
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
        if verdict == APPROVE and escalation.required_approvals > 1:
            Approval.objects.get_or_create(
                escalation=escalation, user=user, defaults={"note": note}
            )
            count = escalation.approvals.count()
            if count < escalation.required_approvals:
                events.publish(
                    DASHBOARD,
                    {"type": "dashboard.changed", "coordination": escalation.coordination_id},
                )
                events.frame_appended(escalation.coordination_id, None)
                return DecisionResult(
                    escalation,
                    decided=False,
                    message=f"{count} of {escalation.required_approvals} approvals recorded; "
                    "another approver is needed.",
                )
        approvers = (
            list(
                escalation.approvals.order_by("created_at").values_list("user__username", flat=True)
            )
            if escalation.required_approvals > 1 and verdict == APPROVE
            else [user.username]
        )
        return _finalise(
            escalation,
            verdict=verdict,
            note=note,
            instructions=instructions,
            sender=HUMAN_PREFIX + user.username,
            decided_by_name=user.username,
            user=user,
            approvers=approvers,
            events=events,
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
    sender: str,
    decided_by_name: str,
    user,
    approvers: list[str],
    events: Events,
) -> DecisionResult:
    now = timezone.now()
    status = EscalationStatus.APPROVED if verdict == APPROVE else EscalationStatus.REJECTED
    won = Escalation.objects.filter(pk=escalation.pk, status=EscalationStatus.PENDING).update(
        status=status,
        decided_by=user,
        decided_by_name=decided_by_name,
        decided_at=now,
        note=note,
        instructions=instructions,
    )
    if not won:
        escalation.refresh_from_db()
        return _already(escalation)
    branch = {"action": verdict, "reason": note, "decided_by": decided_by_name}
    if len(approvers) > 1:
        branch["approvers"] = approvers
    payload = {
        "in_reply_to": escalation.in_reply_to,
        "branches": [branch],
        "escalation": escalation.pk,
    }
    if instructions:
        payload["instructions"] = instructions
    coordination = Coordination.locked(escalation.coordination_id)
    frame = emitted(
        "route_response",
        payload,
        sender=sender,
        frame_id=f"decision-{escalation.pk}",
        to=escalation.agent.name,
        coordination_id=coordination.key,
    )
    stored = coordination.append(frame, sender=sender, direction="out")
    Escalation.objects.filter(pk=escalation.pk).update(decision_frame=stored)
    events.frame_appended(coordination.pk, stored.seq)
    from coordination.routing import deliver

    deliver(stored, escalation.agent, events)
    request = escalation.route_request
    if request is not None and request.requester_id != escalation.agent_id:
        deliver(stored, request.requester, events)
    escalation.refresh_from_db()
    notifications.escalation_decided(escalation)
    return DecisionResult(escalation, decided=True, message=f"{status.label.capitalize()}.")


def expire(escalation: Escalation, events: Events) -> bool:
    """At the deadline: the configured default (reject, the safe one) or the next tier
    (admins), with the reason in the chain and the agent told either way.

    Claimed by a conditional update on the deadline the caller read, so two sweepers act
    once. The escalation row is taken before the coordination's, the order `decide` uses,
    so an operator deciding at the same moment waits instead of deadlocking."""
    now = timezone.now()
    waited = round((escalation.deadline - escalation.created_at).total_seconds())
    with transaction.atomic():
        if settings.ESCALATION_DEFAULT == "next_tier" and escalation.tier == 1:
            coordination = Coordination.objects.get(pk=escalation.coordination_id)
            claimed = Escalation.objects.filter(
                pk=escalation.pk, status=EscalationStatus.PENDING, deadline=escalation.deadline
            ).update(tier=2, deadline=coordination.escalation_deadline(now))
            if not claimed:
                return False
            coordination = Coordination.locked(coordination.pk)
            frame = emitted(
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
                to=escalation.agent.name,
            )
            stored = coordination.append(frame, sender=LTPDASH, direction="out")
            events.frame_appended(coordination.pk, stored.seq)
            from coordination.routing import deliver

            # The agent learns its question now waits for the admins; their decision (or the
            # tier-2 default) follows as usual.
            deliver(stored, escalation.agent, events)
            notifications.escalation_moved(escalation)
            return True
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
            sender=LTPDASH,
            decided_by_name=LTPDASH,
            user=None,
            approvers=[LTPDASH],
            events=events,
        )
        return result.decided


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


def handoff(coordination_pk: int, by_user, to_user, events: Events, note: str = "") -> Coordination:
    """Give a coordination to `to_user` (taking over is handing it to yourself). Agents get a
    focus_snapshot naming the new owner; the chain records it."""
    with transaction.atomic():
        coordination = Coordination.locked(coordination_pk)
        previous = coordination.owner.username if coordination.owner else None
        coordination.owner = to_user
        coordination.save(update_fields=["owner"])
        verb = "took over" if by_user == to_user else f"handed off to {to_user.username}"
        frame = emitted(
            "focus_snapshot",
            {
                "coordination_id": coordination.key,
                "state": coordination.state,
                "owner": f"{HUMAN_PREFIX}{to_user.username}",
                "handoff": {"from": previous, "to": to_user.username, "by": by_user.username},
                "reason": f"{by_user.username} {verb}" + (f": {note}" if note else ""),
            },
            sender=HUMAN_PREFIX + by_user.username,
            coordination_id=coordination.key,
        )
        stored = coordination.append(frame, sender=HUMAN_PREFIX + by_user.username, direction="out")
        coordination.latest_snapshot = stored
        coordination.save(update_fields=["latest_snapshot"])
        events.frame_appended(coordination.pk, stored.seq)
        from coordination.routing import deliver

        for agent in agents_in(coordination):
            deliver(stored, agent, events)
        notifications.coordination_taken_over(coordination, by_user, to_user, note)
    return coordination


def escalation_deadline_passed(now=None):
    now = now or timezone.now()
    return Escalation.objects.filter(status=EscalationStatus.PENDING, deadline__lte=now)
