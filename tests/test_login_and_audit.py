"""Login throttling (django-axes) against a real daphne, and the operators' audit log: every
operator act is recorded with who and when, on an admin page."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

from coordination.decisions import APPROVE, decide, handoff
from coordination.models import Act, OperatorAct
from tests.factories import Operator, command, seed

pytestmark = pytest.mark.django_db(transaction=True)


class Browser:
    """A visitor with cookies (no session yet), over real HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def log_in(self, username: str, password: str) -> tuple[int, str]:
        self._open("GET", "/login/")
        csrf = next(c.value for c in self.jar if c.name == "csrftoken")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        return self._open("POST", "/login/", form)

    def _open(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Referer", self.base + "/login/")
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.e2e
def test_six_failed_logins_lock_the_seventh_try_until_an_admin_lifts_it(live, operators):
    browser = Browser(live.http)
    for _ in range(6):
        status, _page = browser.log_in("alice", "wrong")
        assert status in {200, 429}
    status, page = browser.log_in("alice", "pw-alice")  # the right password, seventh try
    assert status == 429
    assert "locked for 15 minutes" in page
    assert AccessAttempt.objects.filter(username="alice").exists()

    admin = Operator(live.http, operators["ada"])
    listed = admin.get("/operators/").body
    assert "Lift lockout" in listed and "alice" in listed
    attempt = AccessAttempt.objects.get(username="alice")
    assert admin.post(f"/operators/lockouts/{attempt.pk}/lift/", {}).status == 200

    status, _page = browser.log_in("alice", "pw-alice")
    assert status == 302  # in
    assert OperatorAct.objects.filter(act=Act.LOCKOUT_LIFTED, subject="alice").exists()


def test_another_user_or_address_is_not_locked_by_someone_elses_failures(client, operators):
    for _ in range(6):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/login/", {"username": "bob", "password": "pw-bob"}).status_code == 302
    other = client.post(
        "/login/", {"username": "alice", "password": "pw-alice"}, REMOTE_ADDR="10.9.8.7"
    )
    assert other.status_code == 302


def test_every_operator_act_is_recorded_with_who_and_when(agents, operators, client_for):
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "page them")
    handoff(escalation.coordination_id, operators["alice"], operators["alice"])
    handoff(escalation.coordination_id, operators["alice"], operators["bob"])
    command("admit", "incident-4821", "metrics-agent", "--by", "alice")  # already in: no act
    command("routing", "set", "metrics", "metrics-agent", "--by", "ada")
    admin = client_for("ada")
    admin.post(reverse("agent-create"), {"name": "new-agent", "scope": "incident-*"})
    admin.post(reverse("agent-rotate", args=[agents.triage.pk]))
    admin.post(reverse("agent-revoke", args=[agents.metrics.pk]))
    admin.post(reverse("operator-role", args=[operators["vic"].pk]), {"role": "approver"})
    command("admit", "incident-4821", "new-agent", "--by", "ada")

    acts = list(OperatorAct.objects.order_by("at", "pk").values_list("operator_name", "act"))
    assert acts == [
        ("alice", Act.DECIDED),
        ("alice", Act.TOOK_OVER),
        ("alice", Act.HANDED_OFF),
        ("ada", Act.ROUTING_CHANGED),
        ("ada", Act.TOKEN_CREATED),
        ("ada", Act.TOKEN_ROTATED),
        ("ada", Act.TOKEN_REVOKED),
        ("ada", Act.ROLE_CHANGED),
        ("ada", Act.ADMITTED),
    ]
    # Acts that touch a coordination are frames in its chain too.
    chain = escalation.coordination.frames.values_list("sender", "type")
    assert ("human:alice", "route_response") in chain  # the decision
    assert ("human:alice", "focus_snapshot") in chain  # take-over, hand-off
    assert ("human:ada", "participant") in chain  # the admission

    page = admin.get(reverse("audit-log")).content.decode()
    assert re.search(r"alice</th>\s*<td>decided an escalation", page)
    assert "admitted an agent" in page
    assert client_for("alice").get(reverse("audit-log")).status_code == 403  # admins only
