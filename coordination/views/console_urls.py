"""URLs of the operator console (pages, fragments, actions)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
