"""Setting operators up from the command line: createoperator and setrole."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError
from django.test import RequestFactory

from coordination.roles import role_of
from tests.factories import command

pytestmark = pytest.mark.django_db


def test_createoperator_with_a_password_gives_the_role_and_a_working_login():
    output = command(
        "createoperator", "carol", "--role", "approver", "--password", "long-enough-pw"
    )

    assert "created with role approver" in output
    assert "long-enough-pw" not in output
    carol = authenticate(_login_request(), username="carol", password="long-enough-pw")
    assert carol is not None and role_of(carol) == "approver"
    assert carol.has_perm("coordination.decide")
    assert not carol.has_perm("coordination.manage_agents")


def test_createoperator_without_a_password_generates_one_and_prints_it_once():
    output = command("createoperator", "dan", "--role", "viewer")

    password = re.search(r"Password \(shown once\): (\S+)", output).group(1)
    dan = authenticate(_login_request(), username="dan", password=password)
    assert dan is not None and role_of(dan) == "viewer"
    assert dan.has_perm("coordination.watch") and not dan.has_perm("coordination.decide")


def test_createoperator_refuses_an_existing_name_and_a_weak_password(operators):
    with pytest.raises(CommandError, match="setrole alice"):
        command("createoperator", "alice", "--role", "admin", "--password", "long-enough-pw")
    with pytest.raises(CommandError, match="too short"):
        command("createoperator", "erin", "--role", "admin", "--password", "short")
    assert not User.objects.filter(username="erin").exists()


def test_setrole_replaces_the_role(operators):
    command("setrole", "vic", "admin")

    vic = User.objects.get(username="vic")
    assert role_of(vic) == "admin"
    assert list(vic.groups.values_list("name", flat=True)) == ["admin"]
    assert vic.has_perm("coordination.manage_routing")


def test_setrole_of_an_unknown_operator_fails():
    with pytest.raises(CommandError, match="No operator"):
        command("setrole", "nobody", "viewer")


def _login_request():
    # Logins are counted per username and address (django-axes), so they come with a request.
    return RequestFactory().post("/login/")
