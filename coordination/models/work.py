"""What frames set in motion: orientations in force, route requests, escalations and
approvals, the outbox (deliveries), and who is looking at an escalation."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from coordination.models.agents import Agent
from coordination.models.base import one_of
from coordination.models.chain import Coordination, Frame


class Orientation(models.Model):
    """The orientation currently in force for an agent within a coordination."""

    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="orientations"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="orientations")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=200, blank=True)
    intent = models.TextField(blank=True)
    guardrails = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=200, blank=True)
    focus = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["coordination", "agent"], name="orientation_one_per_agent"
            ),
        ]


class RequestStatus(models.TextChoices):
    OPEN = "open", "open"  # waiting for the assigned agent's route_response
    ANSWERED = "answered", "answered"
    ESCALATED = "escalated", "escalated"  # handed to humans


class RouteRequest(models.Model):
    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="route_requests"
    )
    frame = models.OneToOneField(Frame, on_delete=models.CASCADE, related_name="route_request")
    requester = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="requests_made")
    ltp_id = models.CharField(max_length=200)  # the request frame's LTP id
    target = models.CharField(max_length=200, blank=True)
    need = models.TextField(blank=True)
    action = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=RequestStatus, default=RequestStatus.OPEN)
    assigned_to = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests_assigned"
    )
    # Agents already tried, in order, so the fallback ladder never goes round in a circle.
    tried = models.JSONField(default=list, blank=True)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    response_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "ltp_id"], name="route_request_requester_id_unique"
            ),
            one_of("status", RequestStatus, "route_request_status_valid"),
        ]


class EscalationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"


class Escalation(models.Model):
    """A question for humans: opened by an `escalate` branch, a request to `human`, or a
    critical action that must never run on an agent's word alone."""

    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="escalations"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="escalations")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="escalations")
    route_request = models.ForeignKey(
        RouteRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="escalations"
    )
    # Which branch of the frame escalated (index), so one frame with two escalate branches
    # opens two escalations but a retried frame opens none.
    branch_index = models.IntegerField(default=-1)
    # The id of the frame the human decision answers (PROTOCOL §4: its in_reply_to).
    in_reply_to = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    action = models.CharField(max_length=200, blank=True)
    rule_id = models.CharField(max_length=100, blank=True)
    proposed_action = models.CharField(max_length=200, blank=True)
    proposed_args = models.JSONField(null=True, blank=True)
    amended_args = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=EscalationStatus, default=EscalationStatus.PENDING
    )
    tier = models.PositiveSmallIntegerField(default=1)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_by_name = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    decision_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A peer's answer that names a critical action: stored, but delivered to the requester
    # only once humans approve (never if they reject).
    held_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="holds"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["frame", "branch_index"], name="escalation_one_per_branch"
            ),
            one_of("status", EscalationStatus, "escalation_status_valid"),
        ]

    @property
    def is_pending(self) -> bool:
        return self.status == EscalationStatus.PENDING


class Approval(models.Model):
    """One operator's vote on an escalation that needs more than one approver."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["escalation", "user"], name="approval_one_per_user"),
        ]


class Delivery(models.Model):
    """The outbox: a frame owed to an agent. Sent when created and again on every reconnect
    until the agent acknowledges it, so a decision reaches its agent exactly once in effect."""

    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="deliveries")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="deliveries")
    ltp_id = models.CharField(max_length=200)  # the frame's LTP id: what the agent's ack names
    created_at = models.DateTimeField(default=timezone.now)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "agent"], name="delivery_once_per_agent"),
        ]
        indexes = [
            models.Index(
                fields=["agent", "created_at"],
                condition=Q(acked_at__isnull=True),
                name="delivery_unacked",
            ),
        ]


class AttentionKind(models.TextChoices):
    LOOKING = "looking", "looking"
    ON_IT = "on_it", "on it"


class Attention(models.Model):
    """An operator looking at an escalation's card, or saying "I'm on it". Kept only while
    fresh: a live page renews its LOOKING rows while its socket is open; ON_IT lasts a few
    minutes unless said again. Expired rows are ignored, then deleted when next touched."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="attention")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    kind = models.CharField(max_length=10, choices=AttentionKind)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["escalation", "user", "kind"], name="attention_one_per_kind"
            ),
            one_of("kind", AttentionKind, "attention_kind_valid"),
        ]
