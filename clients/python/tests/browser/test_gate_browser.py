"""Edit before approve, in a real browser: a gated call shows what approving does, an
approver amends amount_eur to 4000 (after a clear error for bad JSON), and the function runs
once with 4000 (issues #11 and #14)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from gate_helpers import COORDINATION, Bank, gate_for, pending_escalation
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_an_approver_amends_the_arguments_in_the_browser(live, agents, operators, browser_page):
    browser_page.log_in("alice", "pw-alice")
    with gate_for(live.agent_url, agents) as gate, ThreadPoolExecutor(1) as pool:
        bank = Bank(gate)
        call = pool.submit(bank.transfer, "acme", 5000)
        pending_escalation("transfer_money")

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
