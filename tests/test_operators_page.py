"""Admins manage operators and their roles in the console."""

import re

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse

from coordination.roles import role_of


def test_admin_creates_an_operator_whose_password_is_shown_once_and_works(client_for):
    client = client_for("ada")

    response = client.post(reverse("operator-create"), {"username": "dana", "role": "approver"})

    assert response.status_code == 200
    password = re.search(r'class="token-value"><code>([^<]+)</code>', response.content.decode())[1]
    dana = User.objects.get(username="dana")
    assert role_of(dana) == "approver"
    assert (
        authenticate(RequestFactory().post("/login/"), username="dana", password=password) == dana
    )
    assert password not in client.get(reverse("operator-list")).content.decode()


def test_admin_changes_a_role_and_can_take_every_role_away(client_for, operators):
    client = client_for("ada")

    client.post(reverse("operator-role", args=[operators["vic"].pk]), {"role": "approver"})
    assert role_of(User.objects.get(username="vic")) == "approver"

    client.post(reverse("operator-role", args=[operators["vic"].pk]), {"role": ""})
    vic = User.objects.get(username="vic")
    assert role_of(vic) is None
    assert not vic.has_perm("coordination.watch")


def test_an_admin_cannot_take_the_admin_role_from_themselves(client_for, operators):
    client = client_for("ada")

    response = client.post(reverse("operator-role", args=[operators["ada"].pk]), {"role": "viewer"})

    assert response.status_code == 400
    assert "cannot take the admin role from yourself" in response.content.decode()
    assert role_of(User.objects.get(username="ada")) == "admin"


def test_a_duplicate_operator_name_is_refused(client_for):
    client = client_for("ada")

    response = client.post(reverse("operator-create"), {"username": "alice", "role": "viewer"})

    assert response.status_code == 400
    assert "exists" in response.content.decode()
    assert role_of(User.objects.get(username="alice")) == "approver"
