"""The review page in a real browser: a mark in the picture shows its step, filters survive
a reload, and the downloaded report works offline."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from coordination.decisions import APPROVE, decide
from tests.factories import seed
from tests.seed import KEY

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
REVIEW = f"/coordinations/{KEY}/review/"


@pytest.fixture
def incident(live, agents, operators):
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call")
    return escalation


def test_clicking_a_mark_shows_its_step(incident, browser_page):
    browser_page.log_in_as("vic")
    page = browser_page.goto(f"/coordinations/{KEY}/")
    page.get_by_role("link", name="Review", exact=True).click()
    page.wait_for_url(f"**{REVIEW}")

    seq = incident.frame.seq  # the escalation
    page.locator(f"svg.swimlane a#mark-{seq}").click()
    expect(page).to_have_url(re.compile(f"#step-{seq}$"))
    step = page.locator(f"#step-{seq}")
    expect(step).to_be_in_viewport()
    expect(page.locator(f"#step-{seq}:target")).to_have_count(1)
    expect(step).to_contain_text("guardrail: cannot page DB")
    assert browser_page.errors == []


def test_filters_and_search_survive_a_reload(incident, browser_page):
    browser_page.log_in_as("vic")
    page = browser_page.goto(REVIEW)
    all_steps = page.locator("li.step").count()

    page.get_by_label("Agent").select_option("metrics-agent")
    page.get_by_label("Only escalations and decisions").check()
    page.get_by_label("Text in reasons").fill("cannot page")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"agent=metrics-agent.*only=decisions.*q=cannot"))

    def narrowed():
        steps = page.locator("li.step")
        expect(steps).to_have_count(1)
        expect(steps.first).to_contain_text("metrics-agent escalated to humans.")
        expect(page.locator("svg.swimlane a.mark")).to_have_count(1)
        expect(page.get_by_label("Agent")).to_have_value("metrics-agent")
        expect(page.get_by_label("Only escalations and decisions")).to_be_checked()
        expect(page.get_by_label("Text in reasons")).to_have_value("cannot page")

    narrowed()
    assert all_steps > 1
    page.reload()
    narrowed()
    page.get_by_role("link", name="Clear filters").click()
    expect(page.locator("li.step")).to_have_count(all_steps)


def test_downloaded_report_opens_offline_with_the_picture_and_every_step(
    incident, browser_page, browser, tmp_path
):
    browser_page.log_in_as("vic")
    page = browser_page.goto(REVIEW)
    steps = page.locator("li.step").count()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download review report (HTML)").click()
    path = tmp_path / "report.html"
    download.value.save_as(path)

    offline = browser.new_context(offline=True)
    try:
        report = offline.new_page()
        requests: list[str] = []
        report.on("request", lambda request: requests.append(request.url))
        report.goto(path.as_uri())
        expect(report.locator("svg.swimlane")).to_be_visible()
        expect(report.locator("li.step")).to_have_count(steps)
        expect(report.locator(".integrity")).to_contain_text("verified")
        seq = incident.frame.seq
        report.locator(f"svg.swimlane a#mark-{seq}").click()
        expect(report.locator(f"#step-{seq}")).to_be_in_viewport()
        assert [url for url in requests if not url.startswith("file:")] == []
    finally:
        offline.close()
