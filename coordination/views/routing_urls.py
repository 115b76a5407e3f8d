"""URLs of the routing-table pages (admins)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
