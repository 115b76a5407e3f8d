"""The coordination app. Its models live in models.py, audit_models.py and notifications.py
(see import_models)."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self) -> None:
        # Models that live beside the code that owns them (the review's cached integrity
        # verdict and imported traces; notifications and their preferences) are registered
        # in the same phase as models.py, so migrations and the ORM see them.
        super().import_models()
        import_module("coordination.audit_models")
        import_module("coordination.notifications")
