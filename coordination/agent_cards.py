"""The agents block of a coordination's live page, sent card by card.

An orientation frame changes one agent's card (its intent), a presence change one agent's
badge. A page that shows the same cards in the same order is sent the cards that changed,
each an out-of-band swap by its id, not the block of every card: with twenty agents the block
was most of every message a frame caused (6.7 of 8.5 KB, scripts/bench_live.py) and most of
what each browser laid out again. The whole block goes on connect, and when the cards
themselves change (an agent comes into the block, or one leaves it).

Each card is drawn once per state of its row for every page (`SHARED`), in the form a page
needs: as it sits in the block, or as a swap of its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Set
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.template.loader import render_to_string

from coordination import present
from coordination.sharing import SHARED

_CARD = "coordination/coordination_detail.html#agent-card"


@dataclass(frozen=True)
class Drawn:
    """One agent's card, from its row: drawn (once per state of the row for every page) only
    when a page is sent it."""

    row: present.AgentRow

    @property
    def agent_pk(self) -> int:
        return int(self.row[0])

    @property
    def state(self) -> tuple[Any, ...]:
        """What the card's HTML is drawn from: agent, name, presence, the orientation's frame."""
        return tuple(self.row[:4])

    @property
    def html(self) -> str:
        """The card as it sits in the block."""
        return SHARED.get(("agent-card", *self.state), 0, partial(_draw, self.row))

    def swap(self) -> str:
        """The card as an out-of-band swap of its own (by its id, `agent-card-<pk>`)."""
        return SHARED.get(("agent-card-swap", *self.state), 0, partial(_draw, self.row, True))


def _draw(row: present.AgentRow, swap: bool = False) -> str:
    return render_to_string(_CARD, {"agent_card": present.agent_card(row), "card_oob": swap})


def drawn(coordination_pk: int, agent_pks: Set[int]) -> list[Drawn]:
    """The block's cards in order (by name)."""
    return [Drawn(row) for row in present.agent_rows(coordination_pk, agent_pks)]


def block(cards: list[Drawn]) -> str:
    """The whole block, out of band."""
    context = {"agent_cards": [present.DrawnCard(card.html) for card in cards], "oob": True}
    return render_to_string("coordination/coordination_detail.html#agents", context)


class Sent:
    """What one socket has been sent of the agents block: each card's state, in order."""

    def __init__(self) -> None:
        self.cards: list[tuple[Any, ...]] | None = None

    def changes(self, pk: int, state: Hashable, after: int, spoke: Set[int]) -> list[str]:
        """What to send of coordination `pk`'s block, read for `state` (shared by every page
        asking after tick `after`, see `Shared.get`) with the agents who `spoke`: the cards
        that changed if the socket shows the same agents in the same order (none if it shows
        these cards), else the whole block."""
        cards = SHARED.get(("agents", pk, state), after, partial(drawn, pk, spoke))
        shown, self.cards = self.cards, [card.state for card in cards]
        if shown is None or [s[0] for s in shown] != [s[0] for s in self.cards]:
            return [SHARED.get(("agents-block", pk, state), after, partial(block, cards))]
        return [card.swap() for card, was in zip(cards, shown, strict=True) if card.state != was]
