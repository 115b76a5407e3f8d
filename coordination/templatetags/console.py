"""Template helpers for the console: times people can read, the operator's role, counts."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.html import format_html

from coordination import present
from coordination.models import Frame
from coordination.roles import role_of

register = template.Library()


@register.simple_tag
def when(moment: datetime | None) -> str:
    """A relative time ("3 minutes ago"), with the exact time on hover and for machines.
    static/ltpdash/console.js keeps the relative text current from `datetime`."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        naturaltime(moment),
    )


@register.simple_tag
def clock(moment: datetime | None) -> str:
    """An absolute time with its zone ("2026-11-26 14:02:11 UTC"); console.js shows it in the
    browser's time zone and puts the relative time in the tooltip."""
    if moment is None:
        return "—"
    # The server's text must not change by itself (a live page compares what it renders
    # with what it sent): the relative time in the tooltip is console.js's job.
    text = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html(
        '<time class="clock" datetime="{}" title="{}">{}</time>', moment.isoformat(), text, text
    )


@register.simple_tag
def countdown(deadline: datetime | None) -> str:
    """Time left until `deadline`; console.js ticks it every second and marks it urgent in
    the last two minutes."""
    if deadline is None:
        return "—"
    left = max(int((deadline - timezone.now()).total_seconds()), 0)
    return format_html(
        '<time class="countdown" datetime="{}">{} left</time>',
        deadline.isoformat(),
        f"{left // 60}:{left % 60:02d}",
    )


@register.simple_tag
def operator_role(user: User | AnonymousUser) -> str:
    if not isinstance(user, User):
        return ""
    return role_of(user) or "no role"


@register.simple_tag
def pending_escalations() -> int:
    return present.pending_count()


@register.filter
def pretty(frame: Frame) -> str:
    """A stored frame as indented JSON text (escaped by the template like any text)."""
    return present.pretty(frame)
