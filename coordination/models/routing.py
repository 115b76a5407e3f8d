"""The routing table and its audit record."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class RoutingRule(models.Model):
    """Who handles a need: an ordered list of agent names, first preferred."""

    need = models.CharField(max_length=200, unique=True)
    agents = models.JSONField(default=list)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["need"]

    def __str__(self) -> str:
        return f"{self.need} → {', '.join(self.agents)}"


class RoutingChange(models.Model):
    """The audit record of the routing table: every edit, by whom, before and after."""

    need = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_by_name = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at"]
