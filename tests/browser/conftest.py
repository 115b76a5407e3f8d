"""Playwright driving Debian's Chromium against the session's real daphne.

One browser for the browser tests (a fresh context, i.e. fresh cookies, per test). Agents
run on their own asyncio loop in a thread, because Playwright's sync API must not run inside
one.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from django.contrib.auth.models import User

from tests.factories import session_cookie

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop registered on this thread, which makes
    # Django refuse ORM calls here as if they came from async code; they do not.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


class BrowserPage:
    """A page plus what it did that a test wants to know about (dialogs, script errors)."""

    def __init__(self, context, base: str):
        self.context, self.base = context, base
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on(
            "dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss())
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def goto(self, path: str):
        self.page.goto(self.base + path)
        return self.page

    def log_in(self, username: str, password: str) -> None:
        """Through the real login form, as a person would."""
        page = self.goto("/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/coordinations/")

    def log_in_as(self, username: str) -> None:
        """Logged in as `username` without the form: the browser gets the session cookie of
        a login made here, as the end-to-end tests' operators do (each form login costs a
        password hash in daphne and two page loads; test_console_browser.py and
        test_simulated_incident_browser.py log in through the form)."""
        user = User.objects.get(username=username)
        cookie = {"name": "sessionid", "value": session_cookie(user), "url": self.base}
        self.context.add_cookies([cookie])

    def wait_live(self) -> None:
        """Until htmx's ws extension has opened the page's socket."""
        self.page.wait_for_function("() => window.__wsOpen === true")

    def wait_first_fragment(self) -> None:
        """Until the page's socket has swapped in its first message (on connect a live page
        sends some blocks whole: a test that marks DOM nodes waits for them first)."""
        self.wait_live()
        self.page.wait_for_function("() => (window.__wsMessages || 0) > 0")


@pytest.fixture
def browser_page(browser, live):
    context = browser.new_context()
    # Record when the page's socket opens (htmx's ws extension fires htmx:wsOpen).
    context.add_init_script(
        "document.addEventListener('htmx:wsOpen', () => { window.__wsOpen = true; });"
        "document.addEventListener('htmx:wsAfterMessage', () => {"
        " window.__wsMessages = (window.__wsMessages || 0) + 1; });"
    )
    page = BrowserPage(context, live.http)
    yield page
    context.close()


class AgentLoop:
    """An asyncio loop in a thread for LtpClient agents, driven from sync tests."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 20):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def agent_loop():
    loop = AgentLoop()
    yield loop
    loop.close()
