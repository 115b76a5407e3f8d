"""Rehydration: everything an agent or a person needs to pick a coordination up cold."""

from __future__ import annotations

from typing import Any

from coordination.models import (
    Coordination,
    Escalation,
    EscalationStatus,
    Orientation,
    RequestStatus,
    RouteRequest,
)

RECENT_FRAMES = 50


def rehydrate(coordination: Coordination, recent: int = RECENT_FRAMES) -> dict[str, Any]:
    """The coordination's state, every agent's orientation, what is still open, and its
    `recent` latest frames: what an agent (HTTP context) or a person picks up from."""
    frames = list(coordination.frames.order_by("-seq").only("raw", "seq")[:recent])
    snapshot = coordination.latest_snapshot
    return {
        "coordination": {
            "id": coordination.key,
            "status": coordination.status,
            "state": coordination.state,
            "health": coordination.health,
            "owner": coordination.owner.get_username() if coordination.owner else None,
            "head": {"seq": coordination.head_seq, "hash": coordination.head_hash},
        },
        "latest_snapshot": snapshot.data if snapshot else None,
        "orientations": _orientations(coordination),
        "open_requests": _open_requests(coordination),
        "escalations": _pending_escalations(coordination),
        "recent_frames": [f.data for f in reversed(frames)],
    }


def _orientations(coordination: Coordination) -> list[dict[str, Any]]:
    orientations = (
        Orientation.objects.filter(coordination=coordination)
        .select_related("agent", "frame")
        .order_by("agent__name")
    )
    return [
        {
            "agent": o.agent.name,
            "presence": o.agent.presence,
            "role": o.role,
            "intent": o.intent,
            "guardrails": o.guardrails,
            "mode": o.mode,
            "frame_id": o.frame.ltp_id,
        }
        for o in orientations
    ]


def _open_requests(coordination: Coordination) -> list[dict[str, Any]]:
    requests = (
        RouteRequest.objects.filter(coordination=coordination, status=RequestStatus.OPEN)
        .select_related("requester", "assigned_to")
        .order_by("created_at")
    )
    return [
        {
            "id": r.ltp_id,
            "from": r.requester.name,
            "target": r.target,
            "need": r.need,
            "assigned_to": r.assigned_to.name if r.assigned_to else None,
            "deadline": r.deadline.isoformat() if r.deadline else None,
        }
        for r in requests
    ]


def _pending_escalations(coordination: Coordination) -> list[dict[str, Any]]:
    escalations = (
        Escalation.objects.filter(coordination=coordination, status=EscalationStatus.PENDING)
        .select_related("agent")
        .order_by("created_at")
    )
    return [
        {
            "id": e.pk,
            "agent": e.agent.name,
            "reason": e.reason,
            "action": e.action,
            "rule_id": e.rule_id,
            "in_reply_to": e.in_reply_to,
            "status": e.status,
            "deadline": e.deadline.isoformat() if e.deadline else None,
        }
        for e in escalations
    ]
