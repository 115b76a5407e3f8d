"""The console forbids inline script and foreign origins, on top of autoescaping."""

import re

import pytest

from tests.factories import seed

PAGES = [
    "/coordinations/",
    "/coordinations/incident-4821/",
    "/escalations/",
    "/agents/",
    "/routing/",
    "/operators/",
]


@pytest.mark.parametrize("path", PAGES)
def test_console_pages_send_a_policy_without_inline_script_and_carry_none(client_for, agents, path):
    seed(agents)
    client = client_for("ada")

    response = client.get(path)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    scripts = re.findall(r"<script\b[^>]*>", response.content.decode())
    assert scripts, "the console loads htmx"
    assert all(" src=" in tag for tag in scripts), scripts
