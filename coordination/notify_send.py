"""Sending what `notifications` owes: email, signed webhooks, Slack; and owing reminders.

Run by the sweeper on every pass and by `manage.py notify`; several may run at once. Like the
sweeper's deadlines, each due row is claimed by a conditional update on the `next_attempt_at`
it read, which also pushes that time out by a lease: a sender that dies mid-send leaves the
row to be retried when the lease ends, so a receiver hears each event at least once, and the
event's `id` lets it drop a repeat.

Failures wait BACKOFF * 2**(attempts-1) (at most NOTIFY_MAX_WAIT) before the next attempt;
after NOTIFY_MAX_ATTEMPTS the row is `failed`. A later row for the same escalation and
recipient waits for the earlier ones, so each receiver hears an escalation's events in order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from coordination import notifications
from coordination.models import (
    Channel,
    Escalation,
    EscalationStatus,
    Notification,
    NotificationStatus,
)
from coordination.processes import repeat

BATCH = 100
# How long a claimed row stays claimed: longer than any single send can take.
LEASE = timedelta(seconds=60)
USER_AGENT = "ltpdash-notify/0.1"


def run_pass(now: datetime | None = None, budget: float | None = 5.0) -> list[str]:
    """Owe due reminders, then send due notifications for at most `budget` seconds (so a
    slow receiver never holds up the sweeper's own deadlines for long)."""
    if not notifications.enabled() and not _pending_exists():
        return []
    now = now or timezone.now()
    return [*remind(now), *send_due(now, budget)]


def _pending_exists() -> bool:
    return Notification.objects.filter(status=NotificationStatus.PENDING).exists()


def remind(now: datetime) -> list[str]:
    """A reminder for each undecided escalation whose deadline is within REMIND_BEFORE."""
    if not notifications.enabled() or not settings.ESCALATION_REMIND_BEFORE:
        return []
    window = now + timedelta(seconds=settings.ESCALATION_REMIND_BEFORE)
    reminded = Notification.objects.filter(
        escalation=OuterRef("pk"), event=notifications.REMINDER, deadline=OuterRef("deadline")
    )
    due = (
        Escalation.objects.filter(
            status=EscalationStatus.PENDING, deadline__gt=now, deadline__lte=window
        )
        .exclude(Exists(reminded))
        .order_by("deadline")[:BATCH]
    )
    lines = []
    for escalation in due:
        try:
            with transaction.atomic():
                owed = notifications.escalation_reminder(escalation)
        except IntegrityError:
            continue  # another sweeper reminded of this deadline first
        if owed:
            lines.append(f"escalation {escalation.pk}: reminder owed to {owed} recipient(s)")
    return lines


def send_due(now: datetime | None = None, budget: float | None = None) -> list[str]:
    """Send the due rows in the order they were owed. Returns a line per row sent or failed."""
    now = now or timezone.now()
    started = time.monotonic()
    due = Notification.objects.filter(
        status=NotificationStatus.PENDING, next_attempt_at__lte=now
    ).order_by("pk")[:BATCH]
    down: set[tuple[str, str]] = set()  # receivers that failed in this pass: try next pass
    lines = []
    for row in due:
        if budget is not None and time.monotonic() - started > budget:
            break
        if (row.channel, row.recipient) in down or _waits_for_earlier(row):
            continue
        if not _claim(row, now):
            continue
        error = deliver(row)
        lines.append(_record(row, error))
        if error:
            down.add((row.channel, row.recipient))
    return lines


def _waits_for_earlier(row: Notification) -> bool:
    if row.escalation_id is None:
        return False
    return Notification.objects.filter(
        escalation_id=row.escalation_id,
        channel=row.channel,
        recipient=row.recipient,
        status=NotificationStatus.PENDING,
        pk__lt=row.pk,
    ).exists()


def _claim(row: Notification, now: datetime) -> bool:
    claimed = Notification.objects.filter(
        pk=row.pk, status=NotificationStatus.PENDING, next_attempt_at=row.next_attempt_at
    ).update(next_attempt_at=now + LEASE, attempts=F("attempts") + 1)
    row.attempts += 1
    return bool(claimed)


def backoff(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(settings.NOTIFY_BACKOFF * 2 ** (attempts - 1), settings.NOTIFY_MAX_WAIT)


def _record(row: Notification, error: str | None) -> str:
    now = timezone.now()
    what = f"notification {row.pk} ({row.event}, {row.channel} to {row.recipient})"
    if error is None:
        Notification.objects.filter(pk=row.pk).update(
            status=NotificationStatus.SENT, sent_at=now, next_attempt_at=None, last_error=""
        )
        return f"{what}: sent"
    if row.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        Notification.objects.filter(pk=row.pk).update(
            status=NotificationStatus.FAILED, next_attempt_at=None, last_error=error[:2000]
        )
        return f"{what}: gave up after {row.attempts} attempts: {error}"
    retry = now + timedelta(seconds=backoff(row.attempts))
    Notification.objects.filter(pk=row.pk).update(next_attempt_at=retry, last_error=error[:2000])
    return f"{what}: attempt {row.attempts} failed ({error}); retrying at {retry:%H:%M:%S}"


def deliver(row: Notification) -> str | None:
    """Send one row. Returns None on success, else a short description of the failure."""
    try:
        if row.channel == Channel.EMAIL:
            send_email(row.recipient, row.payload["subject"], row.payload["text"])
        elif row.channel == Channel.WEBHOOK:
            post(row.recipient, row.payload, signed=True)
        else:
            post(row.recipient, row.payload, signed=False)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"{type(exc.reason).__name__}: {exc.reason}"
    except Exception as exc:  # any failure of a receiver is retried, never raised
        return f"{type(exc).__name__}: {exc}"
    return None


def send_email(address: str, subject: str, text: str) -> None:
    if not settings.EMAIL_HOST:
        raise RuntimeError("LTPDASH_EMAIL_HOST is not set any more")
    # The SMTP backend by name: LTPDASH_EMAIL_HOST is what turns email on.
    connection = get_connection("django.core.mail.backends.smtp.EmailBackend")
    EmailMessage(
        subject, text, settings.DEFAULT_FROM_EMAIL, [address], connection=connection
    ).send()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of the secret over `timestamp + "." + body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def post(url: str, payload: dict, signed: bool) -> None:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    # Only http(s) URLs get here: settings refuses any other scheme.
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", USER_AGENT)
    if signed:
        timestamp = str(int(time.time()))
        request.add_header("X-Ltpdash-Event", payload.get("event", ""))
        request.add_header("X-Ltpdash-Timestamp", timestamp)
        request.add_header(
            "X-Ltpdash-Signature", signature(settings.WEBHOOK_SECRET, timestamp, body)
        )
    with urllib.request.urlopen(request, timeout=settings.NOTIFY_TIMEOUT) as response:  # noqa: S310
        response.read()


def run(
    interval: float,
    write: Callable[[str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """`manage.py notify`: a pass every `interval` seconds until `should_stop()`."""
    repeat(interval, lambda: run_pass(budget=max(interval * 5, 5.0)), write, should_stop)
