"""The coordination app. Its models live in models.py plus audit_models.py (see import_models)."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self) -> None:
        # models.py is at its size limit; the review/audit models (the cached integrity
        # verdict, the provenance of imported traces) sit in their own module and are
        # registered in the same phase as models.py, so migrations and the ORM see them.
        super().import_models()
        import_module("coordination.audit_models")
