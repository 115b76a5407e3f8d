"""A live page renders on the event at once, so the live copy of a card's state can reach the
browser before the answer to the operator's own decision. The console keeps the answer: its
message and where it puts focus (a real browser, a real daphne, the answer held back)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.test_operator_browser import escalate
from tests.factories import post_frames_live
from tests.seed import KEY

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_live_copy_arriving_before_the_answer_keeps_the_answers_message_and_focus(
    live, agents, operators, browser_page
):
    escalation = escalate(live, agents)
    browser_page.log_in_as("alice")
    page = browser_page.goto("/escalations/")
    browser_page.wait_live()
    state = page.locator(f"#escalation-{escalation.pk}-state")
    live_copies = []

    def record(socket) -> None:
        socket.on("framereceived", lambda payload: live_copies.append(payload))

    page.on("websocket", record)
    # The decision reaches the server (which commits and sends the live copy at once); its
    # answer reaches the page only once the live copy has.
    page.reload()
    browser_page.wait_live()

    def answer_late(route):
        response = route.fetch()
        time.sleep(1)  # the live copy, sent on commit, arrives meanwhile
        route.fulfill(response=response)

    page.route(f"**/escalations/{escalation.pk}/decide/", answer_late)
    page.locator(f"#escalation-{escalation.pk}").focus()
    page.keyboard.press("a")
    expect(state).to_contain_text("Approved by alice")
    expect(state.locator(".notice")).to_have_text("Approved.")
    expect(state).to_be_focused()
    assert any(f"escalation-{escalation.pk}-state" in str(c) for c in live_copies)
    assert browser_page.errors == []


def test_a_live_copy_of_the_summary_keeps_the_raw_json_the_operator_opened(
    live, agents, operators, browser_page
):
    escalate(live, agents, snapshot={"state": "diagnosis pending"})
    browser_page.log_in_as("alice")
    page = browser_page.goto(f"/coordinations/{KEY}/")
    browser_page.wait_live()
    summary = page.locator("#coordination-summary")
    chain = summary.locator("dd", has_text="head")
    before = chain.inner_text()
    summary.get_by_text("Raw JSON").click()
    expect(summary.locator("pre.json")).to_be_visible()
    # A new frame changes the summary (its chain count): the live copy replaces the block.
    post_frames_live(live, agents.metrics_token, {
        "id": "more-1", "coordination_id": KEY,
        "orientation": {"role": "metrics-agent", "intent": "watch the queue"},
    })  # fmt: skip
    expect(chain).not_to_have_text(before)
    expect(summary.locator("pre.json")).to_be_visible()
    assert browser_page.errors == []


def test_an_agents_new_intent_replaces_its_card_alone_in_the_browser(
    live, agents, operators, browser_page
):
    escalate(live, agents)
    post_frames_live(live, agents.triage_token, {
        "id": "intent-1", "coordination_id": KEY,
        "orientation": {"role": "triage-agent", "intent": "wait for metrics"},
    })  # fmt: skip
    browser_page.log_in_as("vic")
    page = browser_page.goto(f"/coordinations/{KEY}/")
    browser_page.wait_first_fragment()  # the agents block sent whole on connect is in
    triage = page.locator(f"#agent-card-{agents.triage.pk}")
    metrics = page.locator(f"#agent-card-{agents.metrics.pk}")
    expect(triage).to_be_visible()
    # Marks on the nodes the page has now: a node swapped out loses its mark.
    page.evaluate("""() => document.querySelectorAll("#agent-cards article.agent")
        .forEach(card => { card.dataset.before = "yes"; })""")
    post_frames_live(live, agents.metrics_token, {
        "id": "intent-2", "coordination_id": KEY,
        "orientation": {"role": "metrics-agent", "intent": "drain <queue> slowly"},
    })  # fmt: skip
    expect(metrics).to_contain_text("drain <queue> slowly")
    expect(metrics).not_to_have_attribute("data-before", "yes")  # the new card
    expect(triage).to_have_attribute("data-before", "yes")  # left as it was
    expect(page.locator("#agent-cards article.agent")).to_have_count(2)
    assert page.locator("#agent-cards [hx-swap-oob]").count() == 0
    assert browser_page.errors == []
