"""Helpers for the console's tests: the seed flow in-process, and operators over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from django.test import Client

from coordination.ingest import ingest
from coordination.models import Agent, Coordination, Escalation, Presence
from tests import seed
from tests.seed import KEY

# The seed bundles with ids, so that sending them again is a retry.
SEED_REQUEST = {"id": "seed-1", "coordination_id": KEY, **seed.SEED_REQUEST}
SEED_RESPONSE = {"id": "seed-2", "coordination_id": KEY, **seed.SEED_RESPONSE}


def send(agent: Agent, data) -> list:
    """Ingest as if `agent` sent `data`, publishing nothing (no socket is listening)."""
    outcomes = ingest(agent, data)
    assert all(o.error is None for o in outcomes), [o.error.message for o in outcomes if o.error]
    return outcomes


def seed(agents) -> Escalation:
    """The seed flow (PROTOCOL §2) in-process: one coordination, one pending escalation."""
    Agent.objects.filter(pk=agents.metrics.pk).update(presence=Presence.ONLINE)
    agents.metrics.refresh_from_db()
    send(agents.triage, SEED_REQUEST)
    send(agents.metrics, SEED_RESPONSE)
    return Escalation.objects.get(coordination__key=KEY)


def coordination() -> Coordination:
    return Coordination.objects.get(key=KEY)


@dataclass
class Reply:
    status: int
    body: str
    headers: dict
    set_cookies: list[str]

    def json(self):
        return json.loads(self.body)


class Operator:
    """An operator's browser session against a real server, over plain HTTP (urllib)."""

    def __init__(self, base: str, user):
        client = Client()
        client.force_login(user)
        self.base = base
        self.cookies = {"sessionid": client.cookies["sessionid"].value}
        self.opener = urllib.request.build_opener(_NoRedirect())
        page = self.get("/coordinations/")
        assert page.status == 200, page.status
        self.cookies["csrftoken"] = _csrf_cookie(page)

    def _request(self, method: str, path: str, data=None, headers=None) -> Reply:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            request.add_header("X-CSRFToken", self.cookies["csrftoken"])
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self.opener.open(request, timeout=30) as response:
                return _reply(response.status, response.read(), response.headers)
        except urllib.error.HTTPError as error:
            return _reply(error.code, error.read(), error.headers)

    def get(self, path: str) -> Reply:
        return self._request("GET", path)

    def post(self, path: str, data: dict, htmx: bool = False) -> Reply:
        return self._request("POST", path, data, {"HX-Request": "true"} if htmx else None)


def _reply(status: int, body: bytes, headers) -> Reply:
    return Reply(status, body.decode(), dict(headers), headers.get_all("Set-Cookie") or [])


def _csrf_cookie(reply: Reply) -> str:
    for value in reply.set_cookies:
        if value.startswith("csrftoken="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError("the page set no csrftoken cookie")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
