"""Setting operators up from the command line: createoperator and setrole."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from coordination.roles import role_of

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createoperator_with_a_password_gives_the_role_and_a_working_login():
    output = _run("createoperator", "carol", "--role", "approver", "--password", "long-enough-pw")

    assert "created with role approver" in output
    assert "long-enough-pw" not in output
    carol = authenticate(username="carol", password="long-enough-pw")
    assert carol is not None and role_of(carol) == "approver"
    assert carol.has_perm("coordination.decide")
    assert not carol.has_perm("coordination.manage_agents")


def test_createoperator_without_a_password_generates_one_and_prints_it_once():
    output = _run("createoperator", "dan", "--role", "viewer")

    password = re.search(r"Password \(shown once\): (\S+)", output).group(1)
    dan = authenticate(username="dan", password=password)
    assert dan is not None and role_of(dan) == "viewer"
    assert dan.has_perm("coordination.watch") and not dan.has_perm("coordination.decide")


def test_createoperator_refuses_an_existing_name_and_a_weak_password(operators):
    with pytest.raises(CommandError, match="setrole alice"):
        _run("createoperator", "alice", "--role", "admin", "--password", "long-enough-pw")
    with pytest.raises(CommandError, match="too short"):
        _run("createoperator", "erin", "--role", "admin", "--password", "short")
    assert not User.objects.filter(username="erin").exists()


def test_setrole_replaces_the_role(operators):
    _run("setrole", "vic", "admin")

    vic = User.objects.get(username="vic")
    assert role_of(vic) == "admin"
    assert list(vic.groups.values_list("name", flat=True)) == ["admin"]
    assert vic.has_perm("coordination.manage_routing")


def test_setrole_of_an_unknown_operator_fails():
    with pytest.raises(CommandError, match="No operator"):
        _run("setrole", "nobody", "viewer")
