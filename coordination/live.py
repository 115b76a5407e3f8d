"""What live pages receive over their socket: HTML fragments for htmx's out-of-band swaps.

A live page remembers what its browser shows (the last frame's seq, each block's HTML, each
escalation card) and renders only what changed since. It does not trust events to say what
changed: the channel layers drop messages beyond a channel's capacity, and the sweeper's
writes are announced by nobody on the in-memory layer. An event (or a slow timer) only says
"look again"; the database says what is new. A page renders in one call at a time, never
concurrently with itself, on the live pages' own threads (`sharing.rendered`).

Many viewers woken by one event would each ask the database the same thing: they share one
computation (`sharing.SHARED`) of what does not depend on what each browser already shows
(the page's fingerprint, the rows after a seq), provided that computation started after the
viewer was woken. The fingerprint comes in parts (fingerprints.py); each block is drawn from
the parts it names, once per state for every viewer (only the ownership block depends on
the operator), and a socket skips the blocks whose parts did not change: a frame redraws the
summary, not the side blocks it leaves as they were.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Max
from django.template.loader import render_to_string
from django.urls import reverse

from coordination import agent_cards, attention, fingerprints, listing, present, timeline
from coordination.fingerprints import Fingerprint
from coordination.models.chain import Coordination, Frame
from coordination.sharing import SHARED, tick

# Frames sent in one message at most; a page further behind gets several messages.
LIVE_BATCH = 50
# A page that connects further behind than this (an old tab, `?seq=0`) gets only the newest
# frames and a note with a link to reload: catching up a long chain would hold the database
# thread that agents' frames need. Older frames stay a click away (the timeline's pages).
LIVE_CATCH_UP = 50
# How often a page renews its operator's "looking" rows while the cards stay the same (well
# within attention.LOOKING_SECONDS).
LOOK_RENEW_SECONDS = 2.0
# How long an operator's rights, read once, serve their pages' updates.
OPERATOR_SECONDS = 1.0
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

# A block: its id, the state it is drawn from (the fingerprint's parts it names, see
# fingerprints.py, so a frame re-renders only what it changes), a stamp, and how to render it.
# A socket that drew the block from that state already skips it; else state and stamp are the
# block's key in `SHARED`, so one rendering serves every viewer. A rendering reads afresh, so
# it may be newer than its key: a key never recurs once the state moved on (it holds a count
# or time that only grows, or the stamp does), so no viewer gets an older state for a newer key.
Block = tuple[str, Hashable, Hashable, Callable[[], str]]


def _state(fingerprint: Fingerprint | None, *parts: str) -> Hashable:
    return None if fingerprint is None else tuple(fingerprint[part] for part in parts)


def _operator(pk: int) -> User:
    """The operator read afresh with their permissions (read once here, then shared by
    every page and block that asks while it is current)."""
    user = User.objects.get(pk=pk)
    user.get_all_permissions()  # cached on the object: has_perm asks no more queries
    return user


class LivePage:
    """Blocks (replaced whole, by id) and escalation cards (appended when new, their state
    replaced when it changes) for one browser page."""

    card_container = ""
    template = ""

    def __init__(self, user: User, shown: dict[int, str | None]) -> None:
        self.user = user
        self.blocks: dict[str, str] = {}
        self.drawn: dict[str, Hashable] = {}  # the state each block was last drawn from
        # Cards the page shows; None until this socket has sent their state once.
        self.cards: dict[int, str | None] = dict.fromkeys(shown)
        # The versions the page was rendered with: a card still at that version is not sent
        # again on connect, which would wipe a note the operator began typing.
        self.rendered_versions = shown
        # Cards this socket has sent decided: a decision is final, so they are read no more
        # (an inbox open all day would otherwise read every card it ever showed, each wake).
        self.final: set[int] = set()
        self.last_fingerprint: Fingerprint | None = None
        # When what this page shows was read (see `Shared.latest`); None before the first.
        self.read_at: int | None = None
        self.looked: tuple[tuple[int, ...] | None, float] = (None, 0.0)

    def changes(self, asked: int = 0) -> tuple[str, bool]:
        """HTML to send (empty when nothing changed), and whether to render again at once
        (more rows are waiting, or what was shared had been read before tick `asked`)."""
        # A few aggregate queries tell whether anything this page shows may have changed;
        # only then is it rendered (the slow timer asks every few seconds, per viewer).
        shown = self.live_cards()
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
        # Read the operator afresh, at most once a second for all their pages (a frame wakes
        # them many times a second): a role taken away applies to the updates from then on
        # (the socket itself closes when they may no longer watch, see coordination/watch.py).
        pk = self.user.pk
        now = int(time.monotonic() / OPERATOR_SECONDS)
        self.user = SHARED.get(("user", pk, now), 0, lambda: _operator(pk))
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

    def changed(
        self, fingerprint: Fingerprint | None, shown: tuple[int, ...], asked: int
    ) -> list[str]:
        """The blocks and cards that differ from what this socket sent."""
        parts: list[str] = []
        # A block's key says which state it is drawn from: any rendering of it will do.
        after = asked if fingerprint is None else 0
        for block_id, state, stamp, render in self.blocks_of(fingerprint):
            if state is not None and self.drawn.get(block_id) == state:
                continue

            def settled(render: Callable[[], str] = render) -> tuple[str, str]:
                html = render()
                return html, _settled(html)

            key = ("block", *self.identity(), block_id, state, stamp)
            html, settled_html = SHARED.get(key, after, settled)
            if self.blocks.get(block_id) != settled_html:
                parts.append(html)
                self.blocks[block_id] = settled_html
            self.drawn[block_id] = state
        # Cards change only with the escalations: rendered once for every viewer and frame.
        cards = SHARED.get(
            ("cards", *self.identity(), shown, _state(fingerprint, "escalations"), self.can_decide),
            after,
            self.rendered_cards,
        )
        return parts + self.changed_cards(cards)

    def read(self, shown: tuple[int, ...]) -> tuple[Fingerprint | None, News]:
        """The page's news, then its fingerprint with who looks at its cards."""
        news = self.news()
        fingerprint = self.fingerprint()
        if fingerprint is not None:
            fingerprint["looks"] = attention.fingerprint(shown)
        return fingerprint, news

    def position(self) -> tuple[Hashable, ...]:
        """Where in a stream this page is (viewers share news only from the same place)."""
        return ()

    def news(self) -> News:
        return "", 0, False

    def advanced(self, news: str, seq: int) -> None:
        """The page has been sent `news`, the rows up to `seq`."""

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
                if card.decided:  # nobody is on it any more: its people block goes quiet
                    parts.append(_people_html(card.pk, {"decided": True}))
            self.cards[card.pk] = settled
            if card.decided:
                self.final.add(card.pk)
        return parts

    def live_cards(self) -> tuple[int, ...]:
        """The cards shown that may still change: pending, or not yet sent decided."""
        return tuple(sorted(pk for pk in self.cards if pk not in self.final))

    def identity(self) -> tuple[Hashable, ...]:
        """Which page this is, for `SHARED`: pages with one identity show the same things."""
        return (type(self).__name__,)

    @property
    def can_decide(self) -> bool:
        return self.user.has_perm("coordination.decide")

    @property
    def can_take_over(self) -> bool:
        return self.user.has_perm("coordination.take_over")

    def people_blocks(self, fingerprint: Fingerprint | None, asked: int) -> list[str]:
        """Who else looks at each card, who is on it: a block of its own per card, so the
        card's form (and what the operator typed) is not re-sent when someone arrives."""
        cards = self.live_cards()
        # Who looks at the cards is the fingerprint's last part (see `read`).
        looks = asked if fingerprint is None else 0
        key = ("people", *self.identity(), cards, _state(fingerprint, "looks"))
        blocks = SHARED.get((*key, self.user.pk, self.can_decide), looks, self.render_people)
        parts: list[str] = []
        for pk, html in blocks.items():
            if self.blocks.get(f"people-{pk}") != html:
                parts.append(html)
                self.blocks[f"people-{pk}"] = html
        return parts

    def render_people(self) -> dict[int, str]:
        context = {"user": self.user, "can_decide": self.can_decide, "next": self.next_url()}
        return {
            pk: _people_html(pk, {**context, "people": attention.seen_by(people, self.user)})
            for pk, people in attention.people(self.live_cards()).items()
        }

    def fingerprint(self) -> Fingerprint | None:
        """Cheap summary of what the page shows; None renders every time. Pages with cards
        give their escalations' state as "escalations"; every page the pending count as
        "pending" (the nav's counter)."""
        return None

    def blocks_of(self, fingerprint: Fingerprint | None) -> list[Block]:
        """The page's blocks, each with the state it is drawn from."""
        return [("inbox-count", _state(fingerprint, "pending"), None, _inbox_count)]

    def escalation_cards(self) -> list[present.EscalationCard]:
        return []

    def next_url(self) -> str:
        return ""


def _people_html(card_pk: int, context: dict[str, Any]) -> str:
    """A card's people block, to swap in by its id."""
    context = {**context, "card_pk": card_pk, "oob": True}
    return render_to_string("coordination/escalation_card.html#people", context)


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
        self.agents = agent_cards.Sent()
        self.coordination_pk = coordination.pk
        self.key = coordination.key
        self.seq = seq
        self.skipped = 0
        if coordination.head_seq - seq > LIVE_CATCH_UP:
            self.skipped = coordination.head_seq - LIVE_CATCH_UP - max(seq, 0)
            self.seq = coordination.head_seq - LIVE_CATCH_UP

    def fingerprint(self) -> Fingerprint:
        # The digest read after the head: the agents and snapshot are no older than it.
        fingerprint = fingerprints.coordination(self.coordination_pk)
        digest = timeline.digest(self.coordination_pk)
        return fingerprint | {"agents": digest.agents, "snapshot": digest.snapshot}

    def identity(self) -> tuple[Hashable, ...]:
        return (type(self).__name__, self.coordination_pk)

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

    def blocks_of(self, fingerprint: Fingerprint | None) -> list[Block]:
        # Only the ownership block depends on who looks (their rights, themselves); the
        # others are drawn once for every operator. A frame changes the summary; the agents
        # block only when someone new speaks, orients or comes and goes.
        chain = _state(fingerprint, "chain")
        owner = None if fingerprint is None else (fingerprint["chain"][1], self.user.pk)
        by = {
            "summary": (_state(fingerprint, "chain", "snapshot"), None),
            # The owner may come back: the head seq keeps its key from recurring.
            "ownership": (owner and (*owner, self.can_take_over), chain),
            "requests": (_state(fingerprint, "requests"), None),
        }
        return [
            *(
                (name, state, stamp, partial(self.block, name, fingerprint))
                for name, (state, stamp) in by.items()
            ),
            *super().blocks_of(fingerprint),
        ]

    def block(self, name: str, fingerprint: Fingerprint | None) -> str:
        """One side block, reading only what it shows (who has spoken here and the agents'
        latest snapshot from the chain's digest the fingerprint read)."""
        pk = self.coordination_pk
        # Read once for the blocks a change of the chain redraws (any read since will do).
        coordination = SHARED.get(
            ("coordination", pk, _state(fingerprint, "chain")),
            0 if fingerprint else tick(),
            lambda: timeline.with_owner(pk),
        )
        context: dict[str, Any] = {"coordination": coordination, "user": self.user, "oob": True}
        if fingerprint is None:
            digest = timeline.digest(pk)
            fingerprint = {"agents": digest.agents, "snapshot": digest.snapshot}
        if name == "summary":
            snapshot = timeline.snapshot_at(pk, fingerprint["snapshot"])
            context |= {"snapshot": snapshot, "snapshot_fields": present.fields(snapshot)}
        elif name == "ownership":
            can_take_over = self.can_take_over
            operators = present.operators_who_decide() if can_take_over else []
            context |= {"can_take_over": can_take_over, "operators": operators}
        elif name == "requests":
            context["open_requests"] = present.open_requests(coordination)
        return render_to_string(f"coordination/coordination_detail.html#{name}", context)

    def changed(
        self, fingerprint: Fingerprint | None, shown: tuple[int, ...], asked: int
    ) -> list[str]:
        """The side blocks and cards, then the agents block: its cards that changed."""
        parts = super().changed(fingerprint, shown, asked)
        state = _state(fingerprint, "agents", "orientations", "presence")
        if state is None or self.drawn.get("agents") != state:
            pk = self.coordination_pk  # who has spoken here: from the digest the fingerprint read
            spoke = fingerprint["agents"] if fingerprint else timeline.digest(pk).agents
            parts += self.agents.changes(pk, state, asked if fingerprint is None else 0, spoke)
            self.drawn["agents"] = state
        return parts

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

    def fingerprint(self) -> Fingerprint:
        coordinations = Coordination.objects.aggregate(n=Count("pk"), at=Max("last_activity"))
        return {"coordinations": tuple(coordinations.values()), **fingerprints.escalations()}

    def blocks_of(self, fingerprint: Fingerprint | None) -> list[Block]:
        # "Needs me" and the rights shown differ by operator. The nav's counter goes with the
        # table, read after it: a table showing an escalation comes with a counter counting it.
        state = _state(fingerprint, "coordinations", "escalations", "pending", "presence")
        return [("coordination-table", state and (state, self.user.pk), None, self.table)]

    def table(self) -> str:
        context = {**listing.list_context(self.query, self.user), "oob": True}
        table = render_to_string("coordination/coordination_list.html#coordination-table", context)
        return table + _inbox_count()


class InboxPage(LivePage):
    """The escalation inbox: new pending escalations appended (oldest first), shown ones
    updated in place when someone decides them."""

    card_container = "inbox-list"

    def fingerprint(self) -> Fingerprint:
        found = fingerprints.escalations()
        return {"escalations": found["escalations"], "pending": found["pending"]}

    def escalation_cards(self) -> list[present.EscalationCard]:
        return present.inbox(extra_pks=set(self.live_cards()))

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

    def fingerprint(self) -> Fingerprint:
        found = fingerprints.escalations(self.escalation_pk)
        return {"escalations": found["escalations"], "pending": found["pending"]}

    def escalation_cards(self) -> list[present.EscalationCard]:
        return present.cards(present.escalations_with_context().filter(pk=self.escalation_pk))

    def next_url(self) -> str:
        return reverse("escalation-detail", args=[self.escalation_pk])
