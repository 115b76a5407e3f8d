"""Reaching the human outside the tab, end to end: a real daphne takes the agent's frames, a
real sweeper process sends what is owed to a real SMTP server (aiosmtpd) and a real HTTP
receiver on loopback, and operators follow the links over real HTTP.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from django.contrib.auth.models import User
from django.utils.html import escape

from coordination.models import (
    Coordination,
    Escalation,
    EscalationStatus,
    Notification,
    NotificationStatus,
)
from coordination.processes import free_port
from tests.factories import ROOT, Operator, database_env, start_daphne, stop_daphne
from tests.notify_helpers import SECRET, HttpReceiver, SmtpServer, closed_port_url, verify

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY = "incident-notify"


class Outside:
    """daphne + a sweeper, configured to email `smtp` and call `webhook`."""

    def __init__(self, tmp_path, smtp: SmtpServer, webhook: str, **extra: str):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            "LTPDASH_BASE_URL": self.base,
            "LTPDASH_EMAIL_HOST": "127.0.0.1",
            "LTPDASH_EMAIL_PORT": str(smtp.port),
            "LTPDASH_EMAIL_FROM": "ltpdash@example.test",
            "LTPDASH_WEBHOOK_URLS": webhook,
            "LTPDASH_WEBHOOK_SECRET": SECRET,
            "LTPDASH_SWEEP_INTERVAL_MS": "200",
            "LTPDASH_NOTIFY_BACKOFF_MS": "300",
            **extra,
        }
        self.server = start_daphne(tmp_path, self.env, port=port)
        env = {
            **os.environ,
            **database_env(),
            "DJANGO_SETTINGS_MODULE": "ltpdash.settings",
            **self.env,
        }
        self.log = tmp_path / "sweep.log"
        self.sweeper = subprocess.Popen(
            [sys.executable, "manage.py", "sweep"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.sweeper.terminate()
        self.sweeper.wait(timeout=10)
        stop_daphne(self.server)


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def people(operators):
    """alice (approver) and ada (admin) have addresses; so does vic, who only views."""
    for name in ("alice", "ada", "vic"):
        User.objects.filter(username=name).update(email=f"{name}@example.test")
    return operators


def post_frames(base: str, token: str, body) -> dict:
    request = urllib.request.Request(
        base + "/api/v1/frames",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read())
    assert all(f["type"] == "ack" for f in reply["frames"]), reply
    return reply


def ask_critical(outside: Outside, agents, frame_id: str = "crit-1") -> Escalation:
    """triage-agent asks for a critical action over HTTP: it becomes an escalation."""
    post_frames(
        outside.base,
        agents.triage_token,
        {
            "id": frame_id,
            "coordination_id": KEY,
            "orientation": {
                "role": "triage-agent",
                "intent": "drain the backlog",
                "guardrails": ["no production writes"],
            },
            "route_request": {
                "target": "metrics-agent",
                "need": "restart the orders queue",
                "action": "modify_system",
                "args": {"service": "orders-queue"},
            },
        },
    )
    return Escalation.objects.get(coordination__key=KEY, in_reply_to__startswith=frame_id)


@pytest.fixture
def outside_ok(tmp_path, smtp, people, agents):
    # The receiver answers 503 twice before it accepts anything.
    with HttpReceiver(statuses=[503, 503]) as receiver:
        outside = Outside(
            tmp_path,
            smtp,
            receiver.url,
            LTPDASH_ESCALATION_DEADLINE="40",
            LTPDASH_ESCALATION_REMIND_BEFORE="30",
        )
        yield outside, receiver
        outside.stop()


def test_critical_request_emails_the_approver_a_working_link_and_not_the_viewer(
    outside_ok, smtp, people, agents
):
    outside, receiver = outside_ok
    escalation = ask_critical(outside, agents)

    mail = smtp.mailbox.wait_for("alice@example.test")
    text = mail.get_payload(decode=True).decode()
    assert "modify_system" in mail["Subject"]
    assert "modify_system" in text
    assert escalation.reason in text
    assert '{"service": "orders-queue"}' in text
    assert "no production writes" in text
    assert re.search(r"Deadline: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    link = re.search(r"Decide here: (\S+)", text).group(1)
    assert link == f"{outside.base}/escalations/{escalation.pk}/"

    # The link works for alice (she can decide there), and asks anyone else to log in.
    page = Operator(outside.base, people["alice"]).get(link.removeprefix(outside.base))
    assert page.status == 200
    assert escape(escalation.reason) in page.body
    assert 'value="approve"' in page.body
    with urllib.request.urlopen(link, timeout=10) as anonymous:  # follows the redirect
        assert anonymous.url.startswith(f"{outside.base}/login/?next=")
    # One email each for those who may decide; none for vic, who only views.
    receiver.wait_for("escalation.opened")
    assert len(smtp.mailbox.to("alice@example.test")) == 1
    assert len(smtp.mailbox.to("ada@example.test")) == 1
    assert smtp.mailbox.to("vic@example.test") == []
    assert not Notification.objects.filter(recipient="vic@example.test").exists()


def test_webhook_receiver_down_twice_still_gets_the_signed_opened_event(outside_ok, people, agents):
    outside, receiver = outside_ok
    escalation = ask_critical(outside, agents)

    attempts = receiver.wait_for("escalation.opened", count=3)
    assert len(attempts) == 3  # 503, 503, then 204
    body = verify(attempts[-1])  # the signature as the README says to check it
    assert body["event"] == "escalation.opened"
    assert body["escalation"]["id"] == escalation.pk
    assert body["escalation"]["url"] == f"{outside.base}/escalations/{escalation.pk}/"
    assert body["escalation"]["action"] == "modify_system"
    assert body["coordination"]["key"] == KEY
    assert body["agent"]["name"] == "triage-agent"
    # Every retry is the same event: the receiver can drop repeats by `id`.
    assert len({a.json()["id"] for a in attempts}) == 1
    row = Notification.objects.get(event="escalation.opened", channel="webhook")
    _until(lambda: Notification.objects.get(pk=row.pk).status == NotificationStatus.SENT)
    assert Notification.objects.get(pk=row.pk).attempts == 3


def test_reminder_arrives_before_the_deadline(tmp_path, smtp, people, agents):
    # Reminded 38 s before a 40 s deadline: the reminder is due 2 s in (not 10 s, as with
    # the other tests' settings, which waited that long for it).
    with HttpReceiver() as receiver:
        outside = Outside(
            tmp_path,
            smtp,
            receiver.url,
            LTPDASH_ESCALATION_DEADLINE="40",
            LTPDASH_ESCALATION_REMIND_BEFORE="38",
        )
        try:
            escalation = ask_critical(outside, agents)
            assert 39 <= (escalation.deadline - escalation.created_at).total_seconds() <= 41

            (reminder,) = receiver.wait_for("escalation.reminder", timeout=35)
        finally:
            outside.stop()
    # Within the reminder's window (the clocks are this machine's), and before the deadline.
    assert escalation.deadline.timestamp() - 38 <= reminder.at < escalation.deadline.timestamp()
    assert verify(reminder)["escalation"]["id"] == escalation.pk
    Escalation.objects.get(pk=escalation.pk, status=EscalationStatus.PENDING)


def test_decision_and_expiry_reach_the_receiver_in_order(outside_ok, people, agents):
    outside, receiver = outside_ok
    escalation = ask_critical(outside, agents)
    alice = Operator(outside.base, people["alice"])
    reply = alice.post(
        f"/escalations/{escalation.pk}/decide/",
        {"verdict": "approve", "note": "restart it, orders are piling up"},
        htmx=True,
    )
    assert reply.status == 200

    (decided,) = receiver.wait_for("escalation.decided")
    body = verify(decided)
    assert body["escalation"]["decided_by"] == "alice"
    assert body["escalation"]["note"] == "restart it, orders are piling up"
    assert body["escalation"]["status"] == "approved"
    arrived = [event["event"] for event in receiver.events()]
    assert arrived.index("escalation.decided") > arrived.index("escalation.opened")

    # A coordination whose escalations wait 2 s: nobody decides, the default applies.
    Coordination.objects.create(key=KEY + "-short", escalation_deadline_seconds=2)
    post_frames(
        outside.base,
        agents.triage_token,
        {
            "id": "crit-2",
            "coordination_id": KEY + "-short",
            "route_request": {"target": "metrics-agent", "action": "delete_data"},
        },
    )
    (expired,) = receiver.wait_for("escalation.expired", timeout=20)
    body = verify(expired)
    assert body["escalation"]["status"] == "rejected"
    assert body["escalation"]["decided_by"] == "ltpdash"
    assert body["coordination"]["key"] == KEY + "-short"


def test_receiver_down_for_the_whole_test_decisions_flow_and_admins_see_pending(
    tmp_path, smtp, people, agents
):
    outside = Outside(tmp_path, smtp, closed_port_url())
    try:
        escalation = ask_critical(outside, agents)
        reply = Operator(outside.base, people["alice"]).post(
            f"/escalations/{escalation.pk}/decide/",
            {"verdict": "reject", "note": "not during business hours"},
            htmx=True,
        )
        assert reply.status == 200
        assert "Rejected." in reply.body
        webhook = Notification.objects.filter(channel="webhook")
        _until(lambda: webhook.filter(attempts__gte=2).count() == 1)  # opened, retried
        assert webhook.filter(event="escalation.decided", attempts=0).exists()  # waits its turn

        page = Operator(outside.base, people["ada"]).get("/notifications/?status=pending")
        assert page.status == 200
        assert "escalation.opened" in page.body
        assert "escalation.decided" in page.body
        assert "Connection refused" in page.body
        assert Operator(outside.base, people["alice"]).get("/notifications/").status == 403
    finally:
        outside.stop()


def _until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
