"""The operator mid-incident (issue 11), in a real browser against a real daphne with the
Content-Security-Policy on: signals outside the page, deadlines, the first screen, two
operators at once, phones, and accessibility (axe-core)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from coordination.models import Coordination, Escalation, EscalationStatus
from tests.browser.conftest import BrowserPage
from tests.factories import post_frames_live
from tests.seed import KEY

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
REASON = "guardrail: cannot page DB"


def escalate(live, agents, frame_id: str = "esc-1", snapshot: dict | None = None) -> Escalation:
    """metrics-agent escalates (with its orientation and, if given, a focus snapshot)."""
    body = {
        "id": frame_id,
        "coordination_id": KEY,
        "orientation": {
            "role": "metrics-agent",
            "intent": "report queue depth",
            "guardrails": ["no paging without a human"],
        },
        "route_response": {
            "result": {"queue_depth": 1240, "error_rate": 0.07},
            "branches": [{"action": "escalate", "reason": REASON}],
        },
    }
    if snapshot is not None:
        body["focus_snapshot"] = {"coordination_id": KEY, **snapshot}
    replies = post_frames_live(live, agents.metrics_token, body)["frames"]
    assert all(r["type"] == "ack" for r in replies), replies
    return Escalation.objects.filter(coordination__key=KEY).latest("pk")


@contextmanager
def opened(browser, live, user: str, **options):
    """A fresh browser context logged in as `user`."""
    context = browser.new_context(**options)
    context.add_init_script(
        "document.addEventListener('htmx:wsOpen', () => { window.__wsOpen = true; });"
    )
    page = BrowserPage(context, live.http)
    page.log_in_as(user)
    try:
        yield page
    finally:
        context.close()


def test_an_escalation_arriving_changes_the_tab_title_within_a_second(
    live, agents, operators, browser_page
):
    browser_page.log_in_as("alice")
    page = browser_page.goto("/coordinations/")
    browser_page.wait_live()
    expect(page).to_have_title("Coordinations · ltpdash")
    page.evaluate("window.__sameDocument = true")

    escalate(live, agents)

    expect(page).to_have_title("(1) Coordinations · ltpdash", timeout=1000)
    # The favicon carries the count too (a drawn badge), and nothing reloaded.
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon.startswith("data:image/png")
    assert page.evaluate("window.__sameDocument") is True
    # The list shows the nearest deadline, ticking.
    expect(page.locator("#coordination-table time.countdown")).to_have_count(1)
    assert browser_page.errors == []


# Records what the page asks the browser's Notification API to show (the API itself shows
# nothing in a headless browser); permission is granted to the context for real.
RECORD_NOTIFICATIONS = """
window.__notified = [];
const Real = window.Notification;
window.Notification = function (title, options) {
  window.__notified.push(options.body); return new Real(title, options);
};
window.Notification.permission = 'granted';
window.Notification.requestPermission = Real.requestPermission.bind(Real);
"""


def test_desktop_notification_is_off_by_default_and_on_when_the_operator_asks(
    live, agents, operators, browser
):
    with opened(browser, live, "alice", permissions=["notifications"]) as alice:
        alice.context.add_init_script(RECORD_NOTIFICATIONS)
        page = alice.goto("/escalations/")
        alice.wait_live()
        escalate(live, agents, "esc-1")
        expect(page).to_have_title("(1) Escalations · ltpdash", timeout=1000)
        assert page.evaluate("window.__notified") == []  # off by default

        page.get_by_role("button", name="Shortcuts & alerts").click()
        page.get_by_label("Desktop notification").check()
        page.get_by_role("button", name="Close").click()
        page.reload()  # the choice is kept (per operator, in this browser)
        alice.wait_live()
        expect(page.get_by_label("Desktop notification")).to_be_checked()
        escalate(live, agents, "esc-2")
        expect(page).to_have_title("(2) Escalations · ltpdash", timeout=1000)
        page.wait_for_function("() => window.__notified.length === 1")
        assert page.evaluate("window.__notified") == ["2 escalations waiting for a decision"]


def test_the_pending_decision_is_in_the_first_screen_even_with_a_large_snapshot(
    live, agents, operators, browser
):
    huge = {f"field_{i:02d}": "x" * 120 for i in range(60)}
    escalate(live, agents, snapshot={"state": "diagnosis pending", **huge})
    with opened(browser, live, "alice", viewport=DESKTOP) as alice:
        page = alice.goto(f"/coordinations/{KEY}/")
        approve = page.locator("#escalation-list").get_by_role("button", name="Approve")
        expect(approve).to_be_visible()
        box = approve.bounding_box()
        assert box is not None and box["y"] + box["height"] <= DESKTOP["height"], box
        # The snapshot reads as fields; its raw JSON is one click away.
        summary = page.locator("#coordination-summary")
        expect(summary.locator("dl.snapshot-fields")).to_contain_text("field_59")
        expect(summary.locator("pre.json")).to_be_hidden()
        summary.get_by_text("Raw JSON").click()
        expect(summary.locator("pre.json")).to_be_visible()


def _pages(escalation: Escalation) -> list[str]:
    return [
        "/coordinations/",
        f"/coordinations/{KEY}/",
        "/escalations/",
        f"/escalations/{escalation.pk}/",
        "/agents/",
        "/operators/",
        "/routing/",
    ]


def test_at_phone_width_no_page_scrolls_sideways_and_approve_is_on_the_first_screen(
    live, agents, operators, browser
):
    escalation = escalate(live, agents, snapshot={"state": "x" * 400})
    with opened(browser, live, "ada", viewport=PHONE) as ada:
        for path in _pages(escalation):
            page = ada.goto(path)
            page.wait_for_load_state("load")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width}px wide"
            expect(page.get_by_role("link", name="Routing")).to_be_visible()
        page = ada.goto(f"/escalations/{escalation.pk}/")
        approve = page.get_by_role("button", name="Approve")
        box = approve.bounding_box()
        assert box is not None and box["y"] + box["height"] <= PHONE["height"], box
        assert ada.errors == []


def test_a_countdown_ticks_by_itself_and_turns_urgent_under_two_minutes(
    live, agents, operators, browser_page
):
    escalation = escalate(live, agents)
    Escalation.objects.filter(pk=escalation.pk).update(
        deadline=timezone.now() + timedelta(seconds=100)
    )
    browser_page.log_in_as("alice")
    page = browser_page.goto(f"/escalations/{escalation.pk}/")
    countdown = page.locator(f"#escalation-{escalation.pk}-state time.countdown")
    before = countdown.text_content()
    expect(countdown).not_to_have_text(before, timeout=2000)
    expect(countdown).to_have_class("countdown urgent")
    state = page.locator(f"#escalation-{escalation.pk}-state")
    expect(state).to_contain_text("then it rejects automatically")
    # The absolute time, in the browser's zone (a time element the script formatted).
    assert state.locator("time.clock").get_attribute("data-local") == "1"


def test_two_approvers_at_once_the_loser_keeps_their_text_and_sees_who_decided(
    live, agents, operators, browser
):
    escalation = escalate(live, agents)
    card = f"#escalation-{escalation.pk}"
    with (
        opened(browser, live, "alice") as alice,
        opened(browser, live, "bob") as bob,
        opened(browser, live, "ada") as ada,
    ):
        pages = {}
        for name, who in (("alice", alice), ("bob", bob), ("ada", ada)):
            pages[name] = who.goto("/escalations/")
            who.wait_live()
        notes = {"alice": "page them, read-only", "bob": "no: wait for the DBA", "ada": "hmm"}
        for name, page in pages.items():
            page.locator(f"{card} textarea[name=note]").fill(notes[name])
        # People looking at the card are shown to the others, and "I'm on it" too.
        pages["bob"].locator(card).get_by_role("button", name="I'm on it").click()
        expect(pages["alice"].locator(f"{card}-people")).to_contain_text("bob is on it")
        expect(pages["alice"].locator(f"{card}-people")).to_contain_text("Looking:")

        # alice and bob press at the same moment; ada typed and did not press. Both decisions
        # reach the server together: a live page learns of a decision within milliseconds, so
        # otherwise bob's page could show alice's before he could press.
        held = []

        def together(route) -> None:
            held.append(route)
            if len(held) == 2:
                for request in held:
                    request.continue_()

        for name in ("alice", "bob"):
            pages[name].route(f"**/escalations/{escalation.pk}/decide/", together)
        pages["alice"].locator(card).get_by_role("button", name="Approve").click(no_wait_after=True)
        pages["bob"].locator(card).get_by_role("button", name="Reject").click(no_wait_after=True)
        deadline = time.monotonic() + 10
        while Escalation.objects.get(pk=escalation.pk).is_pending:
            assert time.monotonic() < deadline, "nobody won"
            pages["alice"].wait_for_timeout(50)  # Playwright runs the route handlers meanwhile
        decided = Escalation.objects.get(pk=escalation.pk)
        winner = decided.decided_by_name
        losers = [name for name in ("alice", "bob") if name != winner] + ["ada"]

        # Each loser's page shows the decision, and the card in the decided list with a look
        # of its own (the live copies have arrived, not a fixed wait) ...
        verdict = decided.get_status_display().capitalize()
        for name in losers:
            state = pages[name].locator(f"{card}-state")
            expect(state).to_contain_text(f"{verdict} by {winner}")
            expect(state).to_contain_text("not sent")
            expect(pages[name].locator(f"#decided-list {card}")).to_be_visible()
            expect(pages[name].locator(card)).to_have_class(
                f"escalation card status-{decided.status}"
            )
        # ... and still holds the text its operator typed.
        for name in losers:
            state = pages[name].locator(f"{card}-state")
            values = state.locator("textarea").evaluate_all("els => els.map(e => e.value)")
            assert notes[name] in values, (name, values)


def test_keyboard_moves_between_cards_and_focus_follows_actions_and_errors(
    live, agents, operators, browser_page
):
    first = escalate(live, agents, "esc-1")
    second = escalate(live, agents, "esc-2")
    browser_page.log_in_as("alice")
    page = browser_page.goto("/escalations/")
    browser_page.wait_live()
    # From the top of the page, three keys reach the first Approve.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the first decision")).to_be_focused()
    page.keyboard.press("Enter")
    approve = page.locator(f"#escalation-{first.pk}").get_by_role("button", name="Approve")
    expect(approve).to_be_focused()
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("j")
    expect(page.locator(f"#escalation-{first.pk}")).to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(f"#escalation-{second.pk}")).to_be_focused()
    page.keyboard.press("k")
    expect(page.locator(f"#escalation-{first.pk}")).to_be_focused()
    # Reject without a note: the error puts focus on the note.
    page.locator(f"#escalation-{first.pk}").get_by_role("button", name="Reject").click()
    expect(page.locator(f"#note-{first.pk}")).to_be_focused()
    expect(page.locator(f"#note-{first.pk}")).to_have_attribute("aria-invalid", "true")
    # `a` approves the card holding focus; focus stays on the card's state.
    page.locator(f"#escalation-{first.pk}").focus()
    page.keyboard.press("a")
    state = page.locator(f"#escalation-{first.pk}-state")
    expect(state).to_contain_text("Approved by alice")
    expect(state).to_be_focused()
    # `r` puts focus on the next card's note; `?` opens the help.
    page.locator(f"#escalation-{second.pk}").focus()
    page.keyboard.press("r")
    expect(page.locator(f"#note-{second.pk}")).to_be_focused()
    page.locator("body").focus()
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    assert browser_page.errors == []


def test_timeline_folds_presence_filters_by_url_and_takes_a_human_note(
    live, agents, operators, browser_page
):
    escalate(live, agents)
    browser_page.log_in_as("alice")
    page = browser_page.goto(f"/coordinations/{KEY}/")
    page.get_by_label("Add a note to the timeline").fill("DBA paged by phone")
    page.get_by_role("button", name="Add note").click()
    row = page.locator("#timeline-rows li.frame.note")
    expect(row).to_contain_text("human:alice")
    expect(row).to_contain_text("note: DBA paged by phone")
    assert Coordination.objects.get(key=KEY).trace_lines() is not None
    page.get_by_label("Frame type").select_option("note")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**type=note**")
    page.reload()
    expect(page.locator("#timeline-rows li.frame")).to_have_count(1)
    expect(page.get_by_label("Frame type")).to_have_value("note")


def _serious(page) -> list[str]:
    page.wait_for_load_state("load")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => { const r = await axe.run(document);"
        " return {violations: r.violations, passes: r.passes.length}; }"
    )
    assert result["passes"] > 0  # axe did look
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_finds_no_serious_violation_on_any_console_page(
    live, agents, operators, browser, viewport, scheme
):
    escalation = escalate(live, agents, snapshot={"state": "diagnosis pending", "n": 1})
    options = {"viewport": viewport, "bypass_csp": True, "color_scheme": scheme}
    found = {}
    context = browser.new_context(**options)
    login = BrowserPage(context, live.http).goto("/login/")
    found["/login/"] = _serious(login)
    context.close()
    with opened(browser, live, "ada", **options) as ada:
        for path in _pages(escalation):
            found[path] = _serious(ada.goto(path))
    assert {path: bad for path, bad in found.items() if bad} == {}


def test_a_decision_on_a_card_htmx_has_not_bound_yet_still_swaps_in_place(
    live, agents, operators, browser_page
):
    # A live copy of a card is bound by htmx only when it settles; replace the card's form by
    # an unbound copy (as a live swap leaves it for a few ms) and decide on it: the decision
    # goes through htmx all the same, with its verdict, and the page stays where it is.
    escalation = escalate(live, agents, "esc-unbound")
    browser_page.log_in_as("alice")
    page = browser_page.goto("/escalations/")
    browser_page.wait_live()
    page.evaluate(
        "id => { const f = document.querySelector(`#escalation-${id} form.decide`);"
        " f.outerHTML = f.outerHTML; }",
        escalation.pk,
    )
    page.evaluate("() => { window.notReloaded = true; }")
    page.locator(f"#escalation-{escalation.pk}").get_by_role("button", name="Approve").click()
    expect(page.locator(f"#escalation-{escalation.pk}-state")).to_contain_text("Approved by alice")
    assert page.evaluate("() => window.notReloaded === true")  # no plain form post
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.APPROVED
