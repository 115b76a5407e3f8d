"""What is owed to whom when something happens, and how it is sent: rows written with the
event, claimed once, retried with backoff, in order per escalation, to real receivers on
loopback (aiosmtpd, an HTTP server in a thread)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone

from coordination import notify_send
from coordination.decisions import APPROVE, decide, expire, handoff
from coordination.models import (
    Agent,
    Escalation,
    Notification,
    NotificationPreference,
    NotificationStatus,
    Presence,
)
from coordination.notifications import escalation_reminder
from coordination.presence import silenced
from tests.factories import live_connection, seed
from tests.notify_helpers import SECRET, HttpReceiver, SmtpServer, verify

pytestmark = pytest.mark.django_db

HOOK = "http://127.0.0.1:9/hook"  # replaced by a live receiver where anything is sent
EMAIL = {"EMAIL_HOST": "127.0.0.1", "BASE_URL": "http://console.test"}


@pytest.fixture
def people(operators):
    for name in ("alice", "ada", "vic"):
        User.objects.filter(username=name).update(email=f"{name}@example.test")
    return operators


def owed(**filters) -> list[tuple[str, str, str]]:
    rows = Notification.objects.filter(**filters).order_by("pk")
    return [(n.event, n.channel, n.recipient) for n in rows]


@override_settings(**EMAIL)
def test_opened_escalation_owes_an_email_to_each_decider_with_an_address(people, agents):
    escalation = seed(agents)

    assert owed() == [
        ("escalation.opened", "email", "ada@example.test"),
        ("escalation.opened", "email", "alice@example.test"),
    ]
    mail = Notification.objects.get(recipient="alice@example.test").payload
    assert "guardrail: cannot page DB" in mail["text"]
    assert f"http://console.test/escalations/{escalation.pk}/" in mail["text"]


@override_settings(**EMAIL)
def test_operator_who_turned_email_off_is_not_emailed(people, agents):
    NotificationPreference.objects.create(user=people["alice"], email=False)
    seed(agents)
    assert owed() == [("escalation.opened", "email", "ada@example.test")]


@override_settings(**EMAIL)
def test_subject_of_an_agent_reason_with_newlines_stays_one_line(people, agents):
    escalation = seed(agents)
    Escalation.objects.filter(pk=escalation.pk).update(reason="line one\nBcc: evil@x\r\nthree")
    escalation_reminder(Escalation.objects.get(pk=escalation.pk))
    subject = Notification.objects.filter(event="escalation.reminder").first().payload["subject"]
    assert "\n" not in subject and "\r" not in subject


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET)
def test_nothing_is_owed_when_the_event_rolls_back(agents):
    with pytest.raises(RuntimeError), transaction.atomic():
        seed(agents)
        assert owed() == [("escalation.opened", "webhook", HOOK)]
        raise RuntimeError("the event's transaction fails")
    assert owed() == []


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET)
def test_every_event_kind_is_owed_to_webhooks(operators, agents):
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "go ahead")
    handoff(escalation.coordination_id, operators["alice"], operators["alice"])
    Agent.objects.filter(pk=agents.metrics.pk).update(
        presence=Presence.ONLINE, heartbeat_deadline=timezone.now()
    )
    live_connection(agents.metrics)
    silenced(Agent.objects.get(pk=agents.metrics.pk))

    events = [n.event for n in Notification.objects.order_by("pk")]
    assert events == [
        "escalation.opened",
        "escalation.decided",
        "coordination.taken_over",
        "agent.silent",
    ]
    decided = Notification.objects.get(event="escalation.decided").payload
    assert decided["escalation"]["decided_by"] == "alice"
    assert decided["escalation"]["note"] == "go ahead"
    taken = Notification.objects.get(event="coordination.taken_over").payload
    assert (taken["by"], taken["to"]) == ("alice", "alice")
    silent = Notification.objects.get(event="agent.silent").payload
    assert silent["agent"]["name"] == "metrics-agent"


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET, **EMAIL)
def test_expiry_and_the_move_to_the_admins_are_owed(people, agents):
    escalation = seed(agents)
    Escalation.objects.filter(pk=escalation.pk).update(deadline=timezone.now())
    with override_settings(ESCALATION_DEFAULT="next_tier"):
        assert expire(Escalation.objects.get(pk=escalation.pk))
    # Only those who may decide at tier 2 are emailed about the move.
    assert owed(event="escalation.moved") == [
        ("escalation.moved", "webhook", HOOK),
        ("escalation.moved", "email", "ada@example.test"),
    ]
    Escalation.objects.filter(pk=escalation.pk).update(deadline=timezone.now())
    assert expire(Escalation.objects.get(pk=escalation.pk))
    expired = Notification.objects.get(event="escalation.expired")
    assert expired.payload["escalation"]["status"] == "rejected"


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET, NOTIFY_BACKOFF=2.0)
def test_failed_webhook_is_retried_with_backoff_then_sent_signed(agents):
    with HttpReceiver(statuses=[503, 503]) as receiver:
        with override_settings(WEBHOOK_URLS=[receiver.url]):
            seed(agents)
        row = Notification.objects.get()
        now = timezone.now()
        notify_send.send_due(now)
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error.startswith("HTTP 503")
        assert row.next_attempt_at == pytest.approx(now + timedelta(seconds=2), abs=timedelta(1))
        assert notify_send.send_due(now) == []  # not due yet
        notify_send.send_due(now + timedelta(seconds=3))
        notify_send.send_due(now + timedelta(seconds=8))
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("sent", 3)
        body = verify(receiver.requests[-1])
        assert body["event"] == "escalation.opened"
        assert body["id"] == str(row.event_id)


def test_backoff_doubles_up_to_its_cap():
    with override_settings(NOTIFY_BACKOFF=2.0, NOTIFY_MAX_WAIT=300.0):
        assert [notify_send.backoff(n) for n in (1, 2, 3, 9, 10)] == [2, 4, 8, 300, 300]


@override_settings(NOTIFY_MAX_ATTEMPTS=2, NOTIFY_BACKOFF=0.01)
def test_notification_is_given_up_after_the_attempt_limit(agents):
    with HttpReceiver(then=500) as receiver:
        with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=SECRET):
            seed(agents)
        later = timezone.now() + timedelta(seconds=1)
        notify_send.send_due(later)
        notify_send.send_due(later + timedelta(seconds=1))
    row = Notification.objects.get()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 2, None)


def test_a_later_event_waits_for_the_earlier_one_of_its_escalation(operators, agents):
    with HttpReceiver(statuses=[503]) as receiver:
        with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=SECRET):
            escalation = seed(agents)
            notify_send.send_due()  # opened: 503, retried later
            decide(escalation.pk, operators["alice"], APPROVE, "ok")
            notify_send.send_due()  # decided is due, but opened is not yet through
            assert len(receiver.requests) == 1
            notify_send.send_due(timezone.now() + timedelta(minutes=1))
        assert [e["event"] for e in receiver.events()] == [
            "escalation.opened",
            "escalation.opened",
            "escalation.decided",
        ]


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET)
def test_a_due_row_is_claimed_by_one_sender(agents):
    seed(agents)
    row = Notification.objects.get()
    copy = Notification.objects.get()
    now = timezone.now()
    assert notify_send._claim(row, now) is True
    assert notify_send._claim(copy, now) is False


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET, ESCALATION_REMIND_BEFORE=30)
def test_reminder_of_a_deadline_is_owed_once(agents):
    escalation = seed(agents)
    Escalation.objects.filter(pk=escalation.pk).update(
        deadline=timezone.now() + timedelta(seconds=20)
    )
    now = timezone.now()
    assert len(notify_send.remind(now)) == 1
    assert notify_send.remind(now) == []  # a second sweeper finds it done
    with pytest.raises(IntegrityError), transaction.atomic():
        escalation_reminder(Escalation.objects.get(pk=escalation.pk))  # a racing one
    assert Notification.objects.filter(event="escalation.reminder").count() == 1


@override_settings(WEBHOOK_URLS=[HOOK], WEBHOOK_SECRET=SECRET, ESCALATION_REMIND_BEFORE=30)
def test_no_reminder_while_the_deadline_is_far(agents):
    seed(agents)  # deadline: the default 900 s
    assert notify_send.remind(timezone.now()) == []


def test_email_reaches_a_real_smtp_server(people, agents):
    with SmtpServer() as smtp:
        with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp.port):
            escalation = seed(agents)
            notify_send.send_due()
        mail = smtp.mailbox.wait_for("alice@example.test")
    assert mail["From"] == "ltpdash@localhost"
    assert f"Escalation {escalation.pk} waits for a decision" in mail["Subject"]
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == 2


def test_slack_gets_a_readable_message_for_opened_and_decided(operators, agents):
    with HttpReceiver() as slack, override_settings(SLACK_WEBHOOK_URL=slack.url):
        escalation = seed(agents)
        decide(escalation.pk, operators["alice"], APPROVE, "fine <b>")
        handoff(escalation.coordination_id, operators["alice"], operators["alice"])
        notify_send.send_due()
    texts = [r.json()["text"] for r in slack.requests]
    assert len(texts) == 2  # not the takeover
    assert "waits for a decision" in texts[0]
    assert f"/escalations/{escalation.pk}/|Open escalation" in texts[0]
    assert "approved by alice" in texts[1] and "fine &lt;b&gt;" in texts[1]
    assert "X-Ltpdash-Signature" not in slack.requests[0].headers


def test_notify_command_sends_what_is_owed(agents):
    with HttpReceiver() as receiver:
        with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=SECRET):
            seed(agents)
            out = io.StringIO()
            call_command("notify", "--once", stdout=out)
        assert "sent" in out.getvalue()
        assert [e["event"] for e in receiver.events()] == ["escalation.opened"]
