"""Notifications: the admins' delivery list, and each operator's own email switch."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from coordination.models import Notification, NotificationPreference, NotificationStatus
from coordination.views.access import ConsoleRequest, require_perm

PAGE_SIZE = 50


@require_http_methods(["GET"])
@require_perm("manage_operators")
def notification_list(request: ConsoleRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    rows = Notification.objects.order_by("-pk")
    if status in NotificationStatus.values:
        rows = rows.filter(status=status)
    else:
        status = ""
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "coordination/notifications.html",
        {
            "page": page,
            "status": status,
            "keep": urlencode({"status": status}) if status else "",
            "statuses": NotificationStatus.choices,
            "pending_count": Notification.objects.filter(status=NotificationStatus.PENDING).count(),
            "failed_count": Notification.objects.filter(status=NotificationStatus.FAILED).count(),
            "nav": "notifications",
        },
    )


class PreferenceForm(forms.Form):
    email = forms.EmailField(required=False, label="Your email address")
    send_email = forms.BooleanField(required=False, label="Email me about escalations")


@require_http_methods(["GET", "POST"])
@require_perm("watch")
def my_notifications(request: ConsoleRequest) -> HttpResponse:
    """Each operator's own address and email switch; nobody else's."""
    user = request.user
    preference, _ = NotificationPreference.objects.get_or_create(user=user)
    if request.method == "POST":
        form = PreferenceForm(request.POST)
        if form.is_valid():
            user.email = form.cleaned_data["email"]
            user.save(update_fields=["email"])
            preference.email = form.cleaned_data["send_email"]
            preference.save(update_fields=["email"])
            messages.success(request, "Saved.")
            return redirect("my-notifications")
    else:
        form = PreferenceForm(initial={"email": user.email, "send_email": preference.email})
    return render(
        request, "coordination/my_notifications.html", {"form": form, "nav": "me"}, status=200
    )
