"""The coordination app (its models are the coordination.models package)."""

from __future__ import annotations

from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"
    default_auto_field = "django.db.models.BigAutoField"
