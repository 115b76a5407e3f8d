"""What live pages receive over their socket: HTML fragments for htmx's out-of-band swaps.

A live page remembers what its browser shows (the last frame's seq, each block's HTML, each
escalation card) and renders only what changed since. It does not trust events to say what
changed: the channel layers drop messages beyond a channel's capacity, and the sweeper's
writes are announced by nobody on the in-memory layer. An event (or a slow timer) only says
"look again"; the database says what is new. A page renders in one call at a time, never
concurrently with itself, on the live pages' own threads (`sharing.rendered`).

Many viewers woken by one event would each ask the database the same thing: they share one
computation (`sharing.SHARED`) of what does not depend on what each browser already shows
(the page's fingerprint, its blocks and cards as rendered for one operator, the rows after a
seq), provided that computation started after the viewer was woken.
"""

from __future__ import annotations

import re
import time
from collections.abc import Hashable
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.template.loader import render_to_string
from django.urls import reverse

from coordination import attention, listing, present, timeline
from coordination.models.agents import Agent
from coordination.models.chain import Coordination, Frame
from coordination.models.work import (
    Approval,
    Escalation,
    EscalationStatus,
    RequestStatus,
    RouteRequest,
)
from coordination.sharing import SHARED

# Frames sent in one message at most; a page further behind gets several messages.
LIVE_BATCH = 50
# A page that connects further behind than this (an old tab, `?seq=0`) gets only the newest
# frames and a note with a link to reload: catching up a long chain would hold the database
# thread that agents' frames need. Older frames stay a click away (the timeline's pages).
LIVE_CATCH_UP = 50
# How often a page renews its operator's "looking" rows while the cards stay the same (well
# within attention.LOOKING_SECONDS).
LOOK_RENEW_SECONDS = 2.0
# Relative times change by themselves; a block whose only change is "2 → 3 minutes ago" is
# not resent (console.js keeps those current), so a half-typed note is not wiped for it.
_TIME_TEXT = re.compile(r"(<time[^>]*>)[^<]*(</time>)")


def _settled(html: str) -> str:
    return _TIME_TEXT.sub(r"\1\2", html)


def parse_shown(value: str) -> dict[int, str | None]:
    """`12:pending.0.1,13` → {12: "pending.0.1", 13: None}: each card the page shows, with
    the version of its state the page was rendered with, when it says."""
    shown: dict[int, str | None] = {}
    for part in value.split(","):
        pk, _, version = part.strip().partition(":")
        if pk.isdigit():
            shown[int(pk)] = version or None
    return shown


# New timeline rows as one part of a message, the seq the page has then seen up to, and
# whether more rows are waiting.
News = tuple[str, int, bool]


# An escalation card, its state block (out of band) and that block without its times.
RenderedCard = tuple[present.EscalationCard, str, str]


class LivePage:
    """Blocks (replaced whole, by id) and escalation cards (appended when new, their state
    replaced when it changes) for one browser page."""

    card_container = ""
    template = ""

    def __init__(self, user: User, shown: dict[int, str | None]) -> None:
        self.user = user
        self.blocks: dict[str, str] = {}
        # Cards the page shows; None until this socket has sent their state once.
        self.cards: dict[int, str | None] = dict.fromkeys(shown)
        # The versions the page was rendered with: a card still at that version is not sent
        # again on connect, which would wipe a note the operator began typing.
        self.rendered_versions = shown
        self.last_fingerprint: tuple[Any, ...] | None = None
        # When what this page shows was read (see `Shared.latest`); None before the first.
        self.read_at: int | None = None
        self.looked: tuple[tuple[int, ...] | None, float] = (None, 0.0)

    def changes(self, asked: int = 0) -> tuple[str, bool]:
        """HTML to send (empty when nothing changed), and whether to render again at once
        (more rows are waiting, or what was shared had been read before tick `asked`)."""
        # A few aggregate queries tell whether anything this page shows may have changed;
        # only then is it rendered (the slow timer asks every few seconds, per viewer).
        shown = tuple(sorted(self.cards))
        self.look(shown)
        # The rows after the page's seq, then the fingerprint, in one read (renders run beside
        # ingest, so frames commit in between): the blocks drawn for the fingerprint are at
        # least as new as the rows, so a row never comes without its summary. Rows committed
        # after are not lost: a page with news is never taken as unchanged, and their events
        # wake it again.
        (fingerprint, (news, seq, more)), fresh, self.read_at = SHARED.latest(
            ("read", *self.identity(), shown, *self.position()),
            asked,
            self.read_at,
            lambda: self.read(shown),
        )
        if not news and fingerprint is not None and fingerprint == self.last_fingerprint:
            return "", not fresh
        # Read the operator afresh: a role taken away applies from this update on (the socket
        # itself closes when they may no longer watch, see coordination/watch.py).
        pk = self.user.pk
        self.user = SHARED.get(("user", pk), asked, lambda: User.objects.get(pk=pk))
        parts = [news] if news else []
        self.advanced(news, seq)
        parts.extend(self.changed(fingerprint, shown, asked))
        parts.extend(self.people_blocks(fingerprint, asked))
        if not more:
            self.last_fingerprint = fingerprint
        # A read shared from before the event (another viewer's) is followed by a fresh one.
        return "".join(parts), more or not fresh

    def look(self, shown: tuple[int, ...]) -> None:
        """Renew this operator's "looking" at the cards: when they change, else now and then
        (a page rendering many times a second need not ask each time)."""
        now = time.monotonic()
        if shown != self.looked[0] or now - self.looked[1] >= LOOK_RENEW_SECONDS:
            attention.looking(self.user, shown)
            self.looked = (shown, now)

    def changed(self, fingerprint: Any, shown: tuple[int, ...], asked: int) -> list[str]:
        """The blocks and cards that differ from what this socket sent."""
        parts: list[str] = []
        # The fingerprint says which state a rendering is of: any rendered for it will do.
        after = asked if fingerprint is None else 0
        perms = (self.can_decide, self.can_take_over)
        blocks = SHARED.get(
            ("blocks", *self.identity(), fingerprint, self.user.pk, *perms),
            after,
            self.render_blocks,
        )
        for block_id, html in blocks.items():
            settled = _settled(html)
            if self.blocks.get(block_id) != settled:
                parts.append(html)
                self.blocks[block_id] = settled
        # Cards change only with the escalations: rendered once for every viewer and frame.
        cards = SHARED.get(
            ("cards", *self.identity(), shown, self.cards_fingerprint(fingerprint), perms[0]),
            after,
            self.rendered_cards,
        )
        return parts + self.changed_cards(cards)

    def read(self, shown: tuple[int, ...]) -> tuple[tuple[Any, ...] | None, News]:
        """The page's news, then its fingerprint with who looks at its cards."""
        news = self.news()
        fingerprint = self.fingerprint()
        if fingerprint is not None:
            fingerprint = (*fingerprint, attention.fingerprint(shown))
        return fingerprint, news

    def position(self) -> tuple[Hashable, ...]:
        """Where in a stream this page is (viewers share news only from the same place)."""
        return ()

    def news(self) -> News:
        return "", 0, False

    def advanced(self, news: str, seq: int) -> None:
        """The page has been sent `news`, the rows up to `seq`."""

    def cards_fingerprint(self, fingerprint: tuple[Any, ...] | None) -> Hashable:
        """The part of the fingerprint the escalation cards depend on (who looks at them is
        a block of its own)."""
        return None if fingerprint is None else fingerprint[:-1]

    def rendered_cards(self) -> list[RenderedCard]:
        cards: list[RenderedCard] = []
        can_decide, next_url = self.can_decide, self.next_url()
        for card in self.escalation_cards():
            context = {"card": card, "can_decide": can_decide, "next": next_url, "oob": True}

            def state(context: dict[str, Any] = context) -> str:
                return render_to_string("coordination/escalation_card.html#state", context)

            # A card's state block is what its version says (status, approvals, tier): one
            # rendering per version serves every page and every later change of the others.
            html = SHARED.get(("state", card.pk, card.version, can_decide, next_url), 0, state)
            cards.append((card, html, _settled(html)))
        return cards

    def changed_cards(self, cards: list[RenderedCard]) -> list[str]:
        """New cards whole, changed ones by their state block; a card the browser shows as
        rendered is left alone (what the operator typed stays)."""
        parts: list[str] = []
        for card, state, settled in cards:
            if card.pk not in self.cards:
                context = {"card": card, "can_decide": self.can_decide, "next": self.next_url()}
                html = render_to_string("coordination/escalation_card.html", context)
                parts.append(f'<div hx-swap-oob="beforeend:#{self.card_container}">{html}</div>')
            elif (
                self.cards[card.pk] is None and self.rendered_versions.get(card.pk) == card.version
            ):
                pass  # the page already shows this state
            elif self.cards[card.pk] != settled:
                parts.append(state)
            self.cards[card.pk] = settled
        return parts

    def identity(self) -> tuple[Hashable, ...]:
        """Which page this is, for `SHARED`: pages with one identity show the same things."""
        return (type(self).__name__,)

    @property
    def can_decide(self) -> bool:
        return self.user.has_perm("coordination.decide")

    @property
    def can_take_over(self) -> bool:
        return self.user.has_perm("coordination.take_over")

    def people_blocks(self, fingerprint: Any, asked: int) -> list[str]:
        """Who else looks at each card, who is on it: a block of its own per card, so the
        card's form (and what the operator typed) is not re-sent when someone arrives."""
        cards = tuple(sorted(self.cards))
        # Who looks at the cards is the fingerprint's last part (see `read`).
        looks = asked if fingerprint is None else 0
        key = ("people", *self.identity(), cards, fingerprint and fingerprint[-1])
        blocks = SHARED.get((*key, self.user.pk, self.can_decide), looks, self.render_people)
        parts: list[str] = []
        for pk, html in blocks.items():
            if self.blocks.get(f"people-{pk}") != html:
                parts.append(html)
                self.blocks[f"people-{pk}"] = html
        return parts

    def render_people(self) -> dict[int, str]:
        return {
            pk: render_to_string(
                "coordination/escalation_card.html#people",
                {
                    "card_pk": pk,
                    "people": attention.seen_by(people, self.user),
                    "user": self.user,
                    "can_decide": self.can_decide,
                    "next": self.next_url(),
                    "oob": True,
                },
            )
            for pk, people in attention.people(list(self.cards)).items()
        }

    def fingerprint(self) -> tuple[Any, ...] | None:
        """Cheap summary of what the page shows; None renders every time."""
        return None

    def render_blocks(self) -> dict[str, str]:
        return {"inbox-count": _inbox_count()}

    def escalation_cards(self) -> list[present.EscalationCard]:
        return []

    def next_url(self) -> str:
        return ""


def _escalations_fingerprint(escalations: QuerySet[Escalation]) -> tuple[Any, ...]:
    summary = escalations.aggregate(
        n=Count("pk"),
        last=Max("pk"),
        pending=Count("pk", filter=Q(status=EscalationStatus.PENDING)),
        decided=Max("decided_at"),
        tiers=Sum("tier"),
    )
    approvals = Approval.objects.filter(escalation__in=escalations).count()
    return (*summary.values(), approvals, present.pending_count())


def _presence_fingerprint() -> tuple[Any, ...]:
    return tuple(Agent.objects.aggregate(at=Max("presence_changed_at"), n=Count("pk")).values())


def _inbox_count() -> str:
    return render_to_string(
        "coordination/base.html#inbox-count", {"pending": present.pending_count(), "oob": True}
    )


class CoordinationPage(LivePage):
    """A coordination's detail page: new timeline rows on top, the side blocks, its cards."""

    card_container = "escalation-list"

    def __init__(
        self,
        user: User,
        coordination: Coordination,
        seq: int,
        shown: dict[int, str | None],
        only: timeline.Filter | None = None,
    ) -> None:
        super().__init__(user, shown)
        self.only = only or timeline.Filter()
        self.coordination_pk = coordination.pk
        self.key = coordination.key
        self.seq = seq
        self.skipped = 0
        if coordination.head_seq - seq > LIVE_CATCH_UP:
            self.skipped = coordination.head_seq - LIVE_CATCH_UP - max(seq, 0)
            self.seq = coordination.head_seq - LIVE_CATCH_UP

    def fingerprint(self) -> tuple[Any, ...]:
        coordination = Coordination.objects.filter(pk=self.coordination_pk)
        return (
            _escalations_fingerprint(
                Escalation.objects.filter(coordination_id=self.coordination_pk)
            ),
            *coordination.values_list("head_seq", "owner_id", "state").get(),
            _presence_fingerprint(),
            *RouteRequest.objects.filter(coordination_id=self.coordination_pk)
            .aggregate(
                n=Count("pk"),
                open=Count("pk", filter=Q(status=RequestStatus.OPEN)),
                at=Max("updated_at"),
            )
            .values(),
        )

    def identity(self) -> tuple[Hashable, ...]:
        return (type(self).__name__, self.coordination_pk)

    def cards_fingerprint(self, fingerprint: tuple[Any, ...] | None) -> Hashable:
        return None if fingerprint is None else fingerprint[0]

    def position(self) -> tuple[Hashable, ...]:
        # Viewers at one seq share the rows after it, so each shows every frame once, in
        # order, whoever rendered them.
        return (self.only.query, self.seq, self.skipped)

    def advanced(self, news: str, seq: int) -> None:
        self.seq = seq
        if news:
            self.skipped = 0

    def news(self) -> News:
        seen = self.seq
        frames, seq = timeline.after(self.coordination_pk, seen, self.only, LIVE_BATCH)
        # A full batch may have been the last one: ask, rather than send an empty message.
        more = seq - seen >= LIVE_BATCH and (
            Frame.objects.filter(coordination_id=self.coordination_pk, seq__gt=seq).exists()
        )
        if not frames:
            return "", seq, more
        rows = timeline.fold([present.TimelineRow(frame) for frame in reversed(frames)])
        context = {"rows": rows, "skipped": self.skipped, "reload": self.next_url()}
        html = render_to_string("coordination/coordination_detail.html#live-rows", context)
        return html, seq, more

    def render_blocks(self) -> dict[str, str]:
        coordination = Coordination.objects.select_related("owner", "latest_snapshot").get(
            pk=self.coordination_pk
        )
        snapshot = timeline.agents_snapshot(coordination)
        context = {
            "coordination": coordination,
            "snapshot": snapshot,
            "snapshot_fields": present.fields(snapshot),
            "agent_cards": present.agent_cards(coordination),
            "open_requests": present.open_requests(coordination),
            "can_take_over": self.can_take_over,
            "operators": present.operators_who_decide() if self.can_take_over else [],
            "user": self.user,
            "oob": True,
        }
        template = "coordination/coordination_detail.html"
        return {
            block: render_to_string(f"{template}#{block}", context)
            for block in ("summary", "ownership", "agents", "requests")
        } | super().render_blocks()

    def escalation_cards(self) -> list[present.EscalationCard]:
        return present.coordination_escalations(self.coordination_pk)

    def next_url(self) -> str:
        return reverse("coordination-detail", args=[self.key])


class DashboardPage(LivePage):
    """The coordination list (one page of it)."""

    def __init__(self, user: User, query: listing.ListQuery) -> None:
        super().__init__(user, {})
        self.query = query

    def identity(self) -> tuple[Hashable, ...]:
        return (type(self).__name__, self.query)

    def fingerprint(self) -> tuple[Any, ...]:
        coordinations = Coordination.objects.aggregate(n=Count("pk"), at=Max("last_activity"))
        return (
            *coordinations.values(),
            *_escalations_fingerprint(Escalation.objects.all()),
            _presence_fingerprint(),
        )

    def render_blocks(self) -> dict[str, str]:
        context = {**listing.list_context(self.query, self.user), "oob": True}
        table = render_to_string("coordination/coordination_list.html#coordination-table", context)
        return {"coordination-table": table} | super().render_blocks()


class InboxPage(LivePage):
    """The escalation inbox: new pending escalations appended (oldest first), shown ones
    updated in place when someone decides them."""

    card_container = "inbox-list"

    def fingerprint(self) -> tuple[Any, ...]:
        return _escalations_fingerprint(Escalation.objects.all())

    def escalation_cards(self) -> list[present.EscalationCard]:
        return present.inbox(extra_pks=set(self.cards))

    def next_url(self) -> str:
        return reverse("escalation-inbox")


class EscalationPage(LivePage):
    """One escalation's page: its card kept current."""

    card_container = "escalation-one"

    def __init__(self, user: User, escalation_pk: int, shown: dict[int, str | None]) -> None:
        super().__init__(user, shown)
        self.escalation_pk = escalation_pk

    def identity(self) -> tuple[Hashable, ...]:
        return (type(self).__name__, self.escalation_pk)

    def fingerprint(self) -> tuple[Any, ...]:
        return _escalations_fingerprint(Escalation.objects.filter(pk=self.escalation_pk))

    def escalation_cards(self) -> list[present.EscalationCard]:
        return present.cards(present.escalations_with_context().filter(pk=self.escalation_pk))

    def next_url(self) -> str:
        return reverse("escalation-detail", args=[self.escalation_pk])
