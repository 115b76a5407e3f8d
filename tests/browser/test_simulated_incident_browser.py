"""The escalation `simulate --once` leaves waiting is decided by an approver in a real
browser, as a newcomer running the demo would."""

import pytest
from playwright.sync_api import expect

from coordination.models import Delivery, Escalation, EscalationStatus
from tests.browser.conftest import BrowserPage
from tests.factories import simulate_once

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_approver_decides_the_simulated_incidents_escalation_in_the_browser(
    server_and_sweeper,
    operators,
    browser,
):
    server, env, _ = server_and_sweeper
    simulate_once(server, env)

    context = browser.new_context()
    try:
        page = BrowserPage(context, server.http)
        page.log_in("alice", "pw-alice")
        inbox = page.goto("/escalations/")
        card = inbox.locator("article.escalation", has_text="guardrail: cannot page DB")
        expect(card).to_contain_text("metrics-agent-b")
        card.get_by_label("Note to the agent").fill("page the DB on-call")
        card.get_by_role("button", name="Approve").click()
        expect(card).to_contain_text("Approved by alice")
        assert page.errors == []
    finally:
        context.close()

    escalation = Escalation.objects.get(coordination__key="incident-4821")
    assert escalation.status == EscalationStatus.APPROVED
    assert escalation.note == "page the DB on-call"
    # Owed to the agent that escalated, until it comes back and acknowledges it.
    assert Delivery.objects.filter(agent=escalation.agent, frame=escalation.decision_frame).exists()
