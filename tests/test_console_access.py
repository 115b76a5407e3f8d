"""Access to every console page, fragment, action and socket, for each kind of operator.

anonymous → the login page (302); oscar (no role) and roles lacking the permission → 403;
refused actions change nothing.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.urls import reverse

from coordination.models import (
    Agent,
    Attention,
    Coordination,
    Escalation,
    EscalationStatus,
    Frame,
)
from tests.factories import seed, ui_socket
from tests.seed import KEY

ANON, VIEWER, APPROVER, ADMIN, NO_ROLE = "anonymous", "vic", "alice", "ada", "oscar"
EVERYONE = (ANON, NO_ROLE, VIEWER, APPROVER, ADMIN)

# (name, method, url name, args, extra): what the page needs; `args` filled in per test.
WATCH, DECIDE, TAKE_OVER, MANAGE_AGENTS = "watch", "decide", "take_over", "manage_agents"
MANAGE_OPERATORS = "manage_operators"
ALLOWED = {
    WATCH: {VIEWER, APPROVER, ADMIN},
    DECIDE: {APPROVER, ADMIN},
    TAKE_OVER: {APPROVER, ADMIN},
    MANAGE_AGENTS: {ADMIN},
    MANAGE_OPERATORS: {ADMIN},
}

ENDPOINTS = [
    # pages
    ("list", "get", "coordination-list", WATCH, {}),
    ("detail", "get", "coordination-detail", WATCH, {}),
    ("inbox", "get", "escalation-inbox", WATCH, {}),
    ("escalation", "get", "escalation-detail", WATCH, {}),
    ("trace", "get", "coordination-trace", WATCH, {}),
    ("agents", "get", "agent-list", MANAGE_AGENTS, {}),
    ("operators", "get", "operator-list", MANAGE_OPERATORS, {}),
    ("escalation", "get", "escalation-detail", WATCH, {}),
    ("notifications", "get", "notification-list", MANAGE_OPERATORS, {}),
    ("my notifications", "get", "my-notifications", WATCH, {}),
    # fragments (htmx)
    ("timeline page", "get", "coordination-timeline", WATCH, {"htmx": True, "query": "?before=2"}),
    # actions
    ("decide", "post", "escalation-decide", DECIDE, {"data": {"verdict": "approve", "note": "ok"}}),
    ("on it", "post", "escalation-on-it", DECIDE, {"data": {}}),
    ("note", "post", "coordination-note", DECIDE, {"data": {"text": "paged by phone"}}),
    ("take over", "post", "coordination-take-over", TAKE_OVER, {"data": {}}),
    ("hand off", "post", "coordination-hand-off", TAKE_OVER, {"data": {"to": "bob"}}),
    ("create agent", "post", "agent-create", MANAGE_AGENTS, {"data": {"name": "new-agent"}}),
    ("rotate token", "post", "agent-rotate", MANAGE_AGENTS, {"data": {}}),
    (
        "create operator",
        "post",
        "operator-create",
        MANAGE_OPERATORS,
        {"data": {"username": "newop", "role": "viewer"}},
    ),
    ("set role", "post", "operator-role", MANAGE_OPERATORS, {"data": {"role": "admin"}}),
    ("my email", "post", "my-notifications", WATCH, {"data": {"email": "me@example.test"}}),
]


def _url(url_name: str, escalation: Escalation, agent: Agent) -> str:
    if url_name in {
        "coordination-list",
        "escalation-inbox",
        "agent-list",
        "agent-create",
        "operator-list",
        "operator-create",
        "notification-list",
        "my-notifications",
    }:
        return reverse(url_name)
    if url_name == "operator-role":
        return reverse(url_name, args=[User.objects.get(username=NO_ROLE).pk])
    if url_name in {"escalation-decide", "escalation-detail", "escalation-on-it"}:
        return reverse(url_name, args=[escalation.pk])
    if url_name == "agent-rotate":
        return reverse(url_name, args=[agent.pk])
    return reverse(url_name, args=[KEY])


def _state():
    """What a refused action must leave untouched."""
    return (
        Frame.objects.count(),
        list(Escalation.objects.values_list("status", flat=True)),
        Coordination.objects.get(key=KEY).owner_id,
        sorted(Agent.objects.values_list("name", "token_hash")),
        sorted(User.objects.values_list("username", "groups__name", "email")),
        Attention.objects.count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize(
    ("name", "method", "url_name", "permission", "extra"),
    ENDPOINTS,
    ids=[e[0] for e in ENDPOINTS],
)
def test_every_page_fragment_and_action_is_guarded(
    agents, client_for, who, name, method, url_name, permission, extra
):
    escalation = seed(agents)
    client = client_for(None if who == ANON else who)
    url = _url(url_name, escalation, agents.triage) + extra.get("query", "")
    headers = {"HX-Request": "true"} if extra.get("htmx") else {}
    before = _state()

    if method == "get":
        response = client.get(url, headers=headers)
    else:
        response = client.post(url, extra["data"], headers=headers)

    if who == ANON:
        assert response.status_code == 302 if not extra.get("htmx") else 200
        if extra.get("htmx"):
            assert response["HX-Redirect"].startswith(reverse("login"))
        else:
            assert response["Location"].startswith(reverse("login"))
    elif who in ALLOWED[permission]:
        assert response.status_code in {200, 302}, response.content[:500]
        if response.status_code == 302:
            assert not response["Location"].startswith(reverse("login"))
        return
    else:
        assert response.status_code == 403
    assert _state() == before, "a refused request changed something"


@pytest.mark.django_db
def test_login_page_is_open_and_logout_needs_a_post(client_for, operators):
    client = client_for(None)
    assert client.get(reverse("login")).status_code == 200
    client.force_login(operators["vic"])
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("coordination-list")).status_code == 302


@pytest.mark.django_db
def test_a_viewers_forged_decision_is_refused_and_changes_nothing(agents, client_for):
    escalation = seed(agents)
    client = client_for("vic", enforce_csrf_checks=False)
    frames = Frame.objects.count()

    response = client.post(
        reverse("escalation-decide", args=[escalation.pk]),
        {"verdict": "approve", "note": "forged"},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 403
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING
    assert escalation.decided_by is None and escalation.note == ""
    assert Frame.objects.count() == frames
    assert not agents.metrics.deliveries.filter(frame__sender__startswith="human:").exists()


# --- sockets ---------------------------------------------------------------------------------

SOCKETS = [
    "/ws/ui/dashboard/",
    "/ws/ui/escalations/",
    "/ws/ui/coordinations/{pk}/?seq=-1",
    "/ws/ui/escalations/{escalation}/",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize("route", SOCKETS)
async def test_every_socket_admits_only_operators_who_may_watch(agents, operators, who, route):
    escalation = await sync_to_async(seed)(agents)
    path = route.format(pk=escalation.coordination_id, escalation=escalation.pk)

    communicator, connected = await ui_socket(path, operators[who] if who != ANON else None)
    try:
        assert connected is (who in ALLOWED[WATCH])
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_from_another_origin_is_refused_even_with_a_session(operators):
    communicator, connected = await ui_socket(
        "/ws/ui/dashboard/", operators["alice"], origin="http://evil.example"
    )
    await communicator.disconnect()
    assert not connected
