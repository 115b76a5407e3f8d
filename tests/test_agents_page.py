"""Admins create agents and rotate their tokens; a token is shown once and works at once."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from coordination.models import Agent

pytestmark = pytest.mark.django_db


def _admin(operators) -> Client:
    client = Client()
    client.force_login(operators["ada"])
    return client


def _token(html: str) -> str:
    return re.search(r"<code>(ltp_[^<]+)</code>", html).group(1)


def test_creating_an_agent_shows_its_token_once(operators):
    client = _admin(operators)

    page = client.post("/agents/new/", {"name": "pager-agent", "role": "pages people"})

    token = _token(page.content.decode())
    agent = Agent.objects.get(name="pager-agent")
    assert Agent.authenticate(token) == agent
    assert token not in client.get("/agents/").content.decode()


def test_rotating_a_token_retires_the_old_one(agents, operators):
    page = _admin(operators).post(f"/agents/{agents.triage.pk}/rotate/")

    token = _token(page.content.decode())
    assert Agent.authenticate(token) == agents.triage
    assert Agent.authenticate(agents.triage_token) is None


def test_a_duplicate_or_malformed_agent_name_is_refused(agents, operators):
    client = _admin(operators)

    duplicate = client.post("/agents/new/", {"name": "triage-agent"})
    malformed = client.post("/agents/new/", {"name": "<b>x</b>"})

    assert duplicate.status_code == 400 and "exists" in duplicate.content.decode()
    assert malformed.status_code == 400
    assert Agent.objects.count() == 2
