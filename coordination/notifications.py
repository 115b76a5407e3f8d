"""Reaching people outside the console: what is owed to whom when something happens.

Each function here is called inside the transaction of the event that causes it (an
escalation opened, decided, expired, moved; a coordination taken over; an agent gone silent)
and only inserts `Notification` rows: one per channel and recipient. The rows commit or roll
back with the event, so a receiver never hears of an event that did not happen and never
misses one that did. Nothing is sent here (no network on the frame path or in a decision);
`notify_send` sends the rows later, from the sweeper or `manage.py notify`.

Every row of one event carries the same `event_id`: the `id` a webhook receiver dedupes on.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from coordination.models import (
    Agent,
    Channel,
    Coordination,
    Escalation,
    Notification,
    Orientation,
)
from coordination.models.notifications import (
    DECIDED,
    EMAIL_EVENTS,
    EXPIRED,
    MOVED,
    OPENED,
    REMINDER,
    SILENT,
    SLACK_EVENTS,
    TAKEN_OVER,
)


def enabled() -> bool:
    return bool(settings.EMAIL_HOST or settings.WEBHOOK_URLS or settings.SLACK_WEBHOOK_URL)


# --- one function per event ----------------------------------------------------------------


def escalation_opened(escalation: Escalation) -> None:
    _escalation_event(OPENED, escalation)


def escalation_reminder(escalation: Escalation) -> int:
    """Owe a reminder of `escalation`'s current deadline. Raises IntegrityError when another
    sweeper already did (the caller's transaction then rolls back whole)."""
    return _escalation_event(REMINDER, escalation, deadline=escalation.deadline)


def escalation_decided(escalation: Escalation) -> None:
    """Decided by an operator, or by ltpdash at the deadline (expired)."""
    _escalation_event(EXPIRED if escalation.decided_by_id is None else DECIDED, escalation)


def escalation_moved(escalation: Escalation) -> None:
    """Moved to the admins' tier at its first deadline: they are emailed now."""
    _escalation_event(MOVED, escalation)


def coordination_taken_over(
    coordination: Coordination, by_user: AbstractBaseUser, to_user: AbstractBaseUser, note: str = ""
) -> None:
    if not enabled():
        return
    body = {
        "coordination": _coordination(coordination),
        "by": by_user.get_username(),
        "to": to_user.get_username(),
        "note": note,
    }
    _owe(TAKEN_OVER, body)


def presence_changed(agent: Agent, old: str, new: str, reason: str) -> None:
    """Only silence is news outside the console: a connected agent stopped answering."""
    if new != "silent" or not enabled():
        return
    # Asked of the database: a connection's Agent object was loaded when it connected.
    coordination = Coordination.objects.filter(
        pk__in=Agent.objects.filter(pk=agent.pk).values("current_coordination_id")
    ).first()
    body = {
        "agent": {"name": agent.name, "role": agent.role, "presence": new, "previous": old},
        "reason": reason,
        "coordination": _coordination(coordination) if coordination else None,
    }
    _owe(SILENT, body)


# --- what is written -------------------------------------------------------------------------


def _escalation_event(event: str, escalation: Escalation, deadline: datetime | None = None) -> int:
    if not enabled():
        return 0
    escalation = Escalation.objects.select_related(
        "coordination__owner", "agent", "frame__orientation", "route_request__frame__orientation"
    ).get(pk=escalation.pk)
    body = {
        "escalation": _escalation(escalation),
        "coordination": _coordination(escalation.coordination),
        "agent": _agent(escalation),
    }
    emails = []
    if settings.EMAIL_HOST and event in EMAIL_EVENTS:
        message = _email(event, escalation, body)
        emails = [(address, message) for address in deciders_to_email(escalation.tier)]
    return _owe(event, body, escalation=escalation, deadline=deadline, emails=emails)


def _owe(
    event: str,
    body: dict,
    *,
    escalation: Escalation | None = None,
    deadline: datetime | None = None,
    emails: list[tuple[str, dict]] | None = None,
) -> int:
    if not enabled():
        return 0
    event_id = uuid.uuid4()
    now = timezone.now()
    full = {"event": event, "id": str(event_id), "occurred_at": now.isoformat(), **body}
    rows = [
        Notification(channel=Channel.WEBHOOK, recipient=url, payload=full)
        for url in settings.WEBHOOK_URLS
    ]
    if settings.SLACK_WEBHOOK_URL and event in SLACK_EVENTS:
        rows.append(
            Notification(
                channel=Channel.SLACK,
                recipient=settings.SLACK_WEBHOOK_URL,
                payload={"text": slack_text(full)},
            )
        )
    rows += [
        Notification(channel=Channel.EMAIL, recipient=address, payload=message)
        for address, message in emails or []
    ]
    for row in rows:
        row.event, row.event_id, row.escalation, row.deadline = (
            event,
            event_id,
            escalation,
            deadline,
        )
        row.created_at = row.next_attempt_at = now
    Notification.objects.bulk_create(rows)
    return len(rows)


def deciders_to_email(tier: int) -> list[str]:
    """Addresses of the active operators who may decide at `tier` and have not opted out."""
    perm = "coordination.decide_tier2" if tier >= 2 else "coordination.decide"
    users = (
        get_user_model()
        .objects.with_perm(
            perm,
            is_active=True,
            include_superusers=True,
            backend="django.contrib.auth.backends.ModelBackend",
        )
        .exclude(email="")
        .exclude(notification_preference__email=False)
        .order_by("pk")
    )
    return sorted({user.email for user in users})


def link(name: str, *args: object) -> str:
    try:
        return settings.BASE_URL + reverse(name, args=args)
    except NoReverseMatch:
        # Keys with '/' have no page of their own (README: known limits).
        return settings.BASE_URL + reverse("coordination-list")


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _escalation(e: Escalation) -> dict:
    return {
        "id": e.pk,
        "url": link("escalation-detail", e.pk),
        "status": e.status,
        "reason": e.reason,
        "action": e.action,
        "args": _arguments(e),
        "rule_id": e.rule_id,
        "tier": e.tier,
        "required_approvals": e.required_approvals,
        "created_at": _when(e.created_at),
        "deadline": _when(e.deadline),
        "decided_by": e.decided_by_name or None,
        "decided_at": _when(e.decided_at),
        "note": e.note,
        "instructions": e.instructions,
    }


def _coordination(c: Coordination) -> dict:
    return {
        "key": c.key,
        "url": link("coordination-detail", c.key),
        "state": c.state,
        "owner": c.owner.get_username() if c.owner else None,
    }


def _agent(e: Escalation) -> dict:
    frame = e.frame.orientation
    if frame is None and e.route_request is not None:
        frame = e.route_request.frame.orientation
    orientation = None
    if frame is None:
        orientation = Orientation.objects.filter(
            coordination_id=e.coordination_id, agent_id=e.agent_id
        ).first()
        frame = orientation.frame if orientation else None
    guardrails = frame.payload.get("guardrails") if frame is not None else None
    if guardrails is not None and not isinstance(guardrails, list):
        guardrails = [guardrails]
    return {
        "name": e.agent.name,
        "role": (frame.payload.get("role") if frame is not None else None) or e.agent.role,
        "guardrails": guardrails or [],
    }


def _arguments(e: Escalation) -> object:
    """The action's arguments: the request's `args`, or an escalating branch's proposal."""
    if e.route_request is not None:
        payload = e.route_request.frame.payload
        for key in ("args", "arguments"):
            if key in payload:
                return payload[key]
    branches = e.frame.payload.get("branches")
    if isinstance(branches, list) and 0 <= e.branch_index < len(branches):
        branch = branches[e.branch_index]
        proposal = branch.get("proposal") if isinstance(branch, dict) else None
        if isinstance(proposal, dict):
            return proposal.get("args")
    return None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _one_line(text: str, length: int = 150) -> str:
    # Agent text may hold newlines: in a mail header they would be a header injection.
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _email(event: str, e: Escalation, body: dict) -> dict:
    deadline = (
        timezone.localtime(e.deadline).strftime("%Y-%m-%d %H:%M:%S %Z") if e.deadline else "-"
    )
    heading = {
        OPENED: f"Escalation {e.pk} waits for a decision",
        REMINDER: f"Reminder: escalation {e.pk} is still undecided",
        MOVED: f"Escalation {e.pk} moved to the admins (tier {e.tier})",
    }[event]
    agent, args = body["agent"], body["escalation"]["args"]
    guardrails = "".join(f"\n  - {_text(g)}" for g in agent["guardrails"]) or " none declared"
    default = "moved to the admins" if settings.ESCALATION_DEFAULT == "next_tier" else "rejected"
    lines = [
        f"{heading} in {e.coordination.key}.",
        "",
        f"Action:       {e.action or '(none named)'}",
        f"Arguments:    {_text(args) if args is not None else '(none)'}",
        f"Reason:       {e.reason}",
        f"Agent:        {e.agent.name}{' (' + _text(agent['role']) + ')' if agent['role'] else ''}",
        f"Guardrails:{guardrails}",
        f"Coordination: {e.coordination.key}",
        f"Deadline:     {deadline} (then {default} if nobody decides)",
        "",
        f"Decide here: {body['escalation']['url']}",
    ]
    what = e.action or e.reason
    subject = _one_line(f"[ltpdash] {heading}: {what} ({e.coordination.key})")
    return {"subject": subject, "text": "\n".join(lines) + "\n"}


def _slack_escape(value: object) -> str:
    return _text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(body: dict) -> str:
    """A readable Slack message (incoming-webhook `text`, mrkdwn) for an escalation event."""
    e, c = body["escalation"], body["coordination"]
    head = {
        OPENED: "waits for a decision",
        REMINDER: "is still undecided (reminder)",
        DECIDED: f"was {e['status']} by {e['decided_by']}",
    }.get(body["event"], body["event"])
    lines = [f"*Escalation {e['id']} {head}* in <{c['url']}|{_slack_escape(c['key'])}>"]
    if e["action"]:
        lines.append(f"Action: `{_slack_escape(e['action'])}`")
    lines.append(f"Reason: {_slack_escape(e['reason'])}")
    if body["event"] == DECIDED and e["note"]:
        lines.append(f"Note: {_slack_escape(e['note'])}")
    elif e["deadline"]:
        lines.append(f"Deadline: {e['deadline']}")
    lines.append(f"<{e['url']}|Open escalation {e['id']}>")
    return "\n".join(lines)
