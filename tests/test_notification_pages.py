"""The pages of reaching people: an escalation's own page (what emails link to), the admins'
delivery list, and each operator's own email switch."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from coordination.models import Notification, NotificationPreference
from tests.factories import seed

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_escalation_page_lets_an_approver_decide_and_returns_there(operators, agents):
    escalation = seed(agents)
    url = reverse("escalation-detail", args=[escalation.pk])
    alice = client_for(operators["alice"])

    page = alice.get(url)
    assert page.status_code == 200
    assert "guardrail: cannot page DB" in page.content.decode()
    assert 'value="approve"' in page.content.decode()
    assert "Waiting for an approver" in client_for(operators["vic"]).get(url).content.decode()

    reply = alice.post(
        reverse("escalation-decide", args=[escalation.pk]),
        {"verdict": "approve", "note": "from the email", "next": url},
    )
    assert reply.status_code == 302 and reply["Location"] == url
    assert "Approved by alice" in alice.get(url).content.decode()
    assert alice.get(reverse("escalation-detail", args=[escalation.pk + 99])).status_code == 404


def test_admins_see_pending_deliveries_with_attempts_and_errors_paginated(operators):
    now = timezone.now()
    Notification.objects.bulk_create(
        Notification(
            event="escalation.opened",
            channel="webhook",
            recipient="http://127.0.0.1:9/hook",
            payload={},
            attempts=3,
            next_attempt_at=now,
            last_error=f"ConnectionRefusedError: refused #{n}",
        )
        for n in range(60)
    )
    ada = client_for(operators["ada"])

    first = ada.get(reverse("notification-list")).content.decode()
    assert "<strong>60</strong> pending" in first
    assert "refused #59" in first and "refused #0" not in first
    assert "Page 1 of 2" in first
    assert "refused #0" in ada.get(reverse("notification-list") + "?page=2").content.decode()
    assert "Notifications</a>" in first  # the admins' nav links here
    sent_only = ada.get(reverse("notification-list") + "?status=sent").content.decode()
    assert "refused #" not in sent_only
    assert (
        "Notifications</a>"
        not in client_for(operators["alice"]).get("/escalations/").content.decode()
    )


def test_operator_sets_their_address_and_turns_email_off(operators, agents):
    alice = client_for(operators["alice"])
    reply = alice.post(reverse("my-notifications"), {"email": "alice@example.test"})
    assert reply.status_code == 302
    operators["alice"].refresh_from_db()
    assert operators["alice"].email == "alice@example.test"
    assert NotificationPreference.objects.get(user=operators["alice"]).email is False

    page = alice.get(reverse("my-notifications")).content.decode()
    assert 'value="alice@example.test"' in page
    with override_settings(EMAIL_HOST="127.0.0.1"):
        seed(agents)
    assert not Notification.objects.filter(recipient="alice@example.test").exists()

    alice.post(reverse("my-notifications"), {"email": "alice@example.test", "send_email": "on"})
    assert NotificationPreference.objects.get(user=operators["alice"]).email is True


def test_operator_page_creates_an_operator_with_an_email_address(operators):
    ada = client_for(operators["ada"])
    reply = ada.post(
        reverse("operator-create"), {"username": "erin", "role": "approver", "email": "e@x.test"}
    )
    assert reply.status_code == 200
    assert "e@x.test" in reply.content.decode()
