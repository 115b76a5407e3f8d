"""An inbox left open all day: the cards it has shown decided are final, and it stops reading
them (a page that re-read every card it ever showed grew slower with each escalation)."""

from __future__ import annotations

import pytest
from django.db.models.signals import post_init
from django.urls import reverse

from coordination import decisions
from coordination.live import InboxPage
from coordination.models import Attention, Escalation
from coordination.sharing import tick
from tests.factories import send
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def _critical(agent, n: int) -> Escalation:
    send(
        agent,
        {"id": f"wipe-{n}", "coordination_id": KEY, "route_request": {"action": "delete_data"}},
    )
    return Escalation.objects.get(route_request__ltp_id=f"wipe-{n}:route_request")


class _Loaded:
    """The escalations the ORM builds from rows while the block runs."""

    def __init__(self) -> None:
        self.pks: list[int] = []

    def __enter__(self) -> _Loaded:
        post_init.connect(self._built, sender=Escalation)
        return self

    def __exit__(self, *exc: object) -> None:
        post_init.disconnect(self._built, sender=Escalation)

    def _built(self, instance: Escalation, **kwargs: object) -> None:
        self.pks.append(instance.pk)


def _woken(page: InboxPage) -> tuple[str, bool]:
    """The page's update as a page woken now renders it (a read started after the wake)."""
    return page.changes(tick())


def test_an_inbox_reads_again_only_the_cards_that_can_still_change(agents, operators):
    page = InboxPage(operators["bob"], {})
    _woken(page)  # the first render: nothing pending
    decided = [_critical(agents.triage, n) for n in range(5)]
    html, _ = _woken(page)
    assert all(f'id="escalation-{e.pk}"' in html for e in decided)
    for escalation in decided:
        decisions.decide(escalation.pk, operators["alice"], decisions.APPROVE, "ok")
    html, _ = _woken(page)
    assert html.count("Approved by alice") == len(decided)  # each card's state, once

    new = _critical(agents.triage, 99)
    with _Loaded() as loaded:
        html, _ = _woken(page)
    assert f'id="escalation-{new.pk}"' in html
    assert set(loaded.pks) == {new.pk}  # the five decided cards were not read again
    assert page.live_cards() == (new.pk,)


def test_a_decided_cards_people_block_goes_quiet(agents, operators):
    escalation = _critical(agents.triage, 1)
    page = InboxPage(operators["bob"], {})
    html, _ = _woken(page)
    people = f'id="escalation-{escalation.pk}-people"'
    assert people in html and "I'm on it" in html

    decisions.decide(escalation.pk, operators["alice"], decisions.REJECT, "no")
    html, _ = _woken(page)
    assert "Rejected by alice" in html
    block = html[html.index(people) :].split("</div>", 1)[0]
    assert "I'm on it" not in block and 'hx-swap-oob="true"' in block


def test_on_it_for_an_escalation_decided_meanwhile_records_nobody(agents, operators, client):
    escalation = _critical(agents.triage, 1)
    decisions.decide(escalation.pk, operators["alice"], decisions.APPROVE, "ok")
    client.force_login(operators["bob"])
    reply = client.post(reverse("escalation-on-it", args=[escalation.pk]), HTTP_HX_REQUEST="true")
    assert reply.status_code == 200
    assert f'id="escalation-{escalation.pk}-people"' in reply.content.decode()
    assert "I'm on it" not in reply.content.decode()
    assert not Attention.objects.exists()
