"""Admins create agents and rotate their tokens; a token is shown once and works at once."""

from __future__ import annotations

import re

import pytest

from coordination.models import Agent

pytestmark = pytest.mark.django_db


def _token(html: str) -> str:
    return re.search(r"<code>(ltp_[^<]+)</code>", html).group(1)


def test_creating_an_agent_shows_its_token_once(client_for):
    client = client_for("ada")

    page = client.post("/agents/new/", {"name": "pager-agent", "role": "pages people"})

    token = _token(page.content.decode())
    agent = Agent.objects.get(name="pager-agent")
    assert Agent.authenticate(token) == agent
    assert token not in client.get("/agents/").content.decode()


def test_rotating_a_token_retires_the_old_one(agents, client_for):
    page = client_for("ada").post(f"/agents/{agents.triage.pk}/rotate/")

    token = _token(page.content.decode())
    assert Agent.authenticate(token) == agents.triage
    assert Agent.authenticate(agents.triage_token) is None


def test_a_duplicate_or_malformed_agent_name_is_refused(agents, client_for):
    client = client_for("ada")

    duplicate = client.post("/agents/new/", {"name": "triage-agent"})
    malformed = client.post("/agents/new/", {"name": "<b>x</b>"})

    assert duplicate.status_code == 400 and "exists" in duplicate.content.decode()
    assert malformed.status_code == 400
    assert Agent.objects.count() == 2
