"""Operators and their roles (admins). A new operator's password is shown once."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from coordination.roles import ADMIN, ROLES, grant, role_of
from coordination.views.access import require_perm

NO_ROLE = ""
ROLE_CHOICES = [(role, role) for role in ROLES] + [(NO_ROLE, "no role (no access)")]


class OperatorForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{1,150}$",
        error_messages={"invalid": "Letters, digits and @ . + - _ only."},
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES[:-1])
    # Where escalations are emailed (LTPDASH_EMAIL_HOST); operators can change it themselves.
    email = forms.EmailField(required=False)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False)


def _page(request: HttpRequest, form: OperatorForm, status: int = 200, **extra) -> HttpResponse:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    operators = [(user, role_of(user) or NO_ROLE) for user in users]
    return render(
        request,
        "coordination/operators.html",
        {
            "operators": operators,
            "form": form,
            "choices": ROLE_CHOICES,
            "nav": "operators",
            **extra,
        },
        status=status,
    )


@require_GET
@require_perm("manage_operators")
def operator_list(request: HttpRequest) -> HttpResponse:
    return _page(request, OperatorForm())


@require_POST
@require_perm("manage_operators")
def operator_create(request: HttpRequest) -> HttpResponse:
    # Answered with the page itself (no redirect): the password is shown once, never stored
    # in a session or a URL.
    form = OperatorForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    password = secrets.token_urlsafe(12)
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                form.cleaned_data["username"], email=form.cleaned_data["email"], password=password
            )
            grant(user, form.cleaned_data["role"])
    except IntegrityError:
        form.add_error("username", "An operator with this name exists.")
        return _page(request, form, status=400)
    return _page(request, OperatorForm(), password=password, new_operator=user)


@require_POST
@require_perm("manage_operators")
def operator_role(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _page(request, OperatorForm(), status=400, error="Choose one of the roles.")
    role = form.cleaned_data["role"] or None
    if user == request.user and role != ADMIN:
        # The last door out of the console should not be closed from inside it.
        return _page(
            request,
            OperatorForm(),
            status=400,
            error="You cannot take the admin role from yourself; ask another admin.",
        )
    grant(user, role)
    return _page(
        request, OperatorForm(), notice=f"{user.username} is now {role or 'without a role'}."
    )
