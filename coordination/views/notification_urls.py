"""URLs of the pages about reaching people outside the console."""

from django.urls import path

from coordination.views import escalations, notifications

urlpatterns = [
    path("escalations/<int:pk>/", escalations.escalation_detail, name="escalation-detail"),
    path("notifications/", notifications.notification_list, name="notification-list"),
    path("me/notifications/", notifications.my_notifications, name="my-notifications"),
]
