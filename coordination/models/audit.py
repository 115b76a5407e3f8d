"""The operators' audit log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.utils import timezone

from coordination.models.base import one_of
from coordination.models.chain import Coordination


class Act(models.TextChoices):
    DECIDED = "decided", "decided an escalation"
    TOOK_OVER = "took_over", "took a coordination over"
    HANDED_OFF = "handed_off", "handed a coordination off"
    ADMITTED = "admitted", "admitted an agent"
    ROUTING_CHANGED = "routing_changed", "changed the routing table"
    TOKEN_CREATED = "token_created", "created an agent and its token"
    TOKEN_ROTATED = "token_rotated", "rotated an agent's token"
    TOKEN_REVOKED = "token_revoked", "revoked an agent's token"
    SCOPE_CHANGED = "scope_changed", "changed an agent's scope"
    ROLE_CHANGED = "role_changed", "changed an operator's role"
    LOCKOUT_LIFTED = "lockout_lifted", "lifted a login lockout"


class OperatorAct(models.Model):
    """The operators' audit log: who did what, when. Acts that touch a coordination are also
    frames in its chain; this log also holds the ones that do not (tokens, roles, routing)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as written: the log outlives a deleted account, and commands act as an OS user.
    operator_name = models.CharField(max_length=200)
    act = models.CharField(max_length=20, choices=Act)
    subject = models.CharField(max_length=300, blank=True)
    coordination = models.ForeignKey(
        Coordination, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [one_of("act", Act, "operator_act_valid")]

    @classmethod
    def record(
        cls,
        operator: AbstractBaseUser | None,
        act: str,
        subject: str = "",
        *,
        coordination: Coordination | None = None,
        by: str = "",
        **detail: Any,
    ) -> OperatorAct:
        """Write one entry, in the caller's transaction (an act and its record stand or fall
        together)."""
        return cls.objects.create(
            operator=operator,
            operator_name=by or (operator.get_username() if operator else "?"),
            act=act,
            subject=subject[:300],
            coordination=coordination,
            detail=detail,
        )
