"""What is owed to people outside the console (see coordination/notifications.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from coordination.models.work import Escalation

OPENED = "escalation.opened"
REMINDER = "escalation.reminder"
DECIDED = "escalation.decided"
EXPIRED = "escalation.expired"
MOVED = "escalation.moved"
TAKEN_OVER = "coordination.taken_over"
SILENT = "agent.silent"
# Events that also go to Slack, and those that email the operators who may decide.
SLACK_EVENTS = {OPENED, REMINDER, DECIDED}
EMAIL_EVENTS = {OPENED, REMINDER, MOVED}


class Channel(models.TextChoices):
    EMAIL = "email", "email"
    WEBHOOK = "webhook", "webhook"
    SLACK = "slack", "Slack"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"  # given up after NOTIFY_MAX_ATTEMPTS


class Notification(models.Model):
    """One message owed to one recipient (an address, a webhook URL) on one channel."""

    event_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    event = models.CharField(max_length=64)
    channel = models.CharField(max_length=10, choices=Channel)
    recipient = models.CharField(max_length=500)
    escalation = models.ForeignKey(
        Escalation, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # For a reminder: the deadline it reminds of. Unique with the recipient, so two sweepers
    # noticing the same approaching deadline remind once.
    deadline = models.DateTimeField(null=True, blank=True)
    # What goes out, fixed when the event happened: the webhook body, or subject and text.
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=NotificationStatus, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "coordination"
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["escalation", "deadline", "channel", "recipient"],
                condition=Q(event=REMINDER),
                name="notification_one_reminder_per_deadline",
            ),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values),
                name="notification_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="notification_due",
            ),
        ]


class NotificationPreference(models.Model):
    """An operator's own choice; no row means the defaults (email on)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email = models.BooleanField(default=True)

    class Meta:
        app_label = "coordination"
