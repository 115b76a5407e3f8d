"""The server suite's browser fixtures (Playwright + Chromium); a package of its own so the
browser's sync loop is closed before the async tests beside it run."""

from tests.browser.conftest import browser, browser_page  # noqa: F401 (fixtures)
