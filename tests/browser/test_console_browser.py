"""The console in a real browser (Chromium via Playwright) against a real daphne."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from coordination.models import Agent, Escalation
from tests.factories import metrics_client, post_frames_live, triage_client
from tests.seed import KEY, SEED_REQUEST_WITH_ID, SEED_RESPONSE_WITH_ID

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_approver_sees_the_escalation_live_and_the_agent_gets_the_note(
    live, agents, operators, browser_page, agent_loop
):
    browser_page.log_in("alice", "pw-alice")
    inbox = browser_page.goto("/escalations/")
    expect(inbox.get_by_text("Nothing waits for a decision.")).to_be_visible()
    browser_page.wait_live()
    inbox.evaluate("window.__sameDocument = true")  # gone if the page reloads

    triage = triage_client(live, agents)
    metrics = metrics_client(live, agents)

    async def seed_flow():
        await triage.connect()
        await metrics.connect()
        await triage.send(SEED_REQUEST_WITH_ID)
        await metrics.receive(type="route_request")
        await metrics.send(SEED_RESPONSE_WITH_ID)

    agent_loop.run(seed_flow())
    try:
        card = inbox.locator("article.escalation", has_text="guardrail: cannot page DB")
        expect(card).to_be_visible()
        expect(inbox.get_by_text("Nothing waits for a decision.")).to_be_hidden()
        expect(card).to_contain_text("metrics-agent")
        expect(card).to_contain_text("queue depth and error rate")
        expect(card).to_contain_text("no production writes")
        expect(inbox.locator("#inbox-count")).to_have_text("1")

        card.get_by_label("Note to the agent").fill("page the DB on-call, read-only")
        card.get_by_role("button", name="Approve").click()

        expect(card).to_contain_text("Approved by alice")
        expect(card).to_contain_text("page the DB on-call, read-only")
        decision = agent_loop.run(
            metrics.receive(type="route_response", where=lambda f: f["from"] == "human:alice")
        )
    finally:
        agent_loop.run(triage.close())
        agent_loop.run(metrics.close())

    assert decision["payload"]["branches"] == [
        {"action": "approve", "reason": "page the DB on-call, read-only", "decided_by": "alice"}
    ]
    assert inbox.evaluate("window.__sameDocument") is True  # no reload happened
    assert Escalation.objects.get().decided_by == operators["alice"]
    # The coordination's page shows it too, with the decision as a frame in the timeline.
    detail = browser_page.goto(f"/coordinations/{KEY}/")
    expect(detail.locator("#decided-list")).to_contain_text("Approved by alice")
    decision_row = detail.locator("#timeline-rows li.frame", has_text="human:alice")
    expect(decision_row).to_contain_text("approve: page the DB on-call, read-only by alice")
    assert browser_page.errors == []


XSS = {
    "script": "<script>window.__xss=1</script>",
    "img": '<img src=x onerror="window.__xss=1">',
    "link": "javascript:window.__xss=1",
    "svg": "<svg onload=window.__xss=1>",
}


def test_agent_supplied_html_and_script_render_as_text(live, operators, browser_page):
    # Agent names are a safe set of characters (refused otherwise, test_participants.py);
    # everything else an agent says can carry markup.
    _, token = Agent.create_with_token("xss-agent", role=XSS["script"], scope="xss-*")
    key = "xss-" + XSS["svg"]
    browser_page.log_in_as("ada")  # an admin sees every page, agents too
    inbox = browser_page.goto("/escalations/")
    browser_page.wait_live()

    # Sent while the inbox is open: the live fragments carry it first.
    replies = post_frames_live(
        live,
        token,
        {
            "id": "xss-1",
            "coordination_id": key,
            "hello": {"role": XSS["script"], "message": XSS["img"]},
            "orientation": {
                "role": XSS["script"],
                "intent": XSS["img"],
                "guardrails": [XSS["link"], XSS["svg"]],
            },
            "route_request": {"target": "human", "need": XSS["script"], "url": XSS["link"]},
            "route_response": {
                "result": {XSS["svg"]: XSS["script"], "href": XSS["link"]},
                "branches": [{"action": "escalate", "reason": XSS["img"]}],
            },
            "focus_snapshot": {"state": XSS["img"], "health": XSS["script"], "url": XSS["link"]},
        },
    )["frames"]
    assert all(r["type"] == "ack" for r in replies), replies
    expect(inbox.locator("article.escalation")).to_have_count(2)
    # And rendered by the server on every other page that shows it.
    pages = {"inbox (live)": inbox}
    for name, path in [
        ("list", "/coordinations/"),
        ("detail", reverse("coordination-detail", args=[key])),
        ("agents", "/agents/"),
    ]:
        pages[name] = browser_page.context.new_page()
        pages[name].goto(browser_page.base + path)

    for name, page in pages.items():
        body = page.locator("body")
        # Shown, literally (the Agents page shows the agent's role, the others its words).
        expect(body).to_contain_text(XSS["script"] if name == "agents" else XSS["img"])
        assert page.evaluate("window.__xss") is None, f"script ran on the {name} page"
        assert page.locator("body img, body svg, body script").count() == 0, name
        assert page.locator('a[href^="javascript:"]').count() == 0, name
    expect(pages["detail"].locator("body")).to_contain_text(XSS["script"])
    expect(pages["detail"].locator("body")).to_contain_text(XSS["link"])
    expect(pages["inbox (live)"].locator("body")).to_contain_text(XSS["script"])
    assert browser_page.dialogs == []
