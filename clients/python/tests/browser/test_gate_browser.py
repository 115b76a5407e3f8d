"""Edit before approve, in a real browser: a gated call shows what approving does, an
approver amends amount_eur to 4000 (after a clear error for bad JSON), and the function runs
once with 4000 (issues #11 and #14)."""

from __future__ import annotations

import json

import pytest
from gate_helpers import COORDINATION, transfer_waiting
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_an_approver_amends_the_arguments_in_the_browser(live, agents, operators, browser_page):
    browser_page.log_in_as("alice")
    with transfer_waiting(live.agent_url, agents) as transfer:
        bank, call = transfer.bank, transfer.call

        inbox = browser_page.goto("/escalations/")
        card = inbox.locator("article.escalation", has_text="refund duplicated charge")
        expect(card).to_contain_text(
            "If you approve: triage-agent will transfer_money (account: acme, amount_eur: 5000)"
        )
        arguments = card.get_by_label("Arguments it will run with")
        arguments.fill("{amount_eur: 4000")
        card.get_by_role("button", name="Approve").click()
        expect(card).to_contain_text("The arguments are not valid JSON")
        assert not bank.calls

        card.get_by_label("Arguments it will run with").fill(
            json.dumps({"account": "acme", "amount_eur": 4000})
        )
        card.get_by_label("Note to the agent").fill("only the duplicated part")
        card.get_by_role("button", name="Approve").click()
        expect(card).to_contain_text("Approved by alice")
        expect(card).to_contain_text("Amended before approval: account: acme, amount_eur: 4000")

        assert call.result(timeout=30) == "sent 4000 EUR to acme"
    assert bank.calls == [("acme", 4000)]

    detail = browser_page.goto(f"/coordinations/{COORDINATION}/")
    row = detail.locator("#timeline-rows li.frame", has_text="human:alice")
    expect(row).to_contain_text("amended: amount_eur: 5000 → 4000")
    assert browser_page.errors == []
