"""URLs of the routing-table pages (admins)."""

from django.urls import path

from coordination.views import routing

urlpatterns = [
    path("routing/", routing.routing_table, name="routing-table"),
    path("routing/rules/", routing.rule_save, name="routing-rule-save"),
    path("routing/rules/<int:pk>/delete/", routing.rule_delete, name="routing-rule-delete"),
]
