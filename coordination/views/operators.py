"""Operators and their roles (admins). A new operator's password is shown once."""

from __future__ import annotations

import secrets
from typing import Any

from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from coordination.models import Act, OperatorAct
from coordination.roles import ADMIN, ROLES, grant, role_of
from coordination.views.access import ConsoleRequest, require_perm

NO_ROLE = ""
AUDIT_PAGE = 50
ROLE_CHOICES = [(role, role) for role in ROLES] + [(NO_ROLE, "no role (no access)")]


class OperatorForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{1,150}$",
        error_messages={"invalid": "Letters, digits and @ . + - _ only."},
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES[:-1])
    # Where escalations are emailed (LTPDASH_EMAIL_HOST); operators can change it themselves.
    email = forms.EmailField(required=False, help_text="Escalations are emailed here.")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False)


def _page(
    request: ConsoleRequest, form: OperatorForm, status: int = 200, **extra: Any
) -> HttpResponse:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    operators = [(user, role_of(user) or NO_ROLE) for user in users]
    return render(
        request,
        "coordination/operators.html",
        {
            "operators": operators,
            "lockouts": _lockouts(),
            "form": form,
            "choices": ROLE_CHOICES,
            "nav": "operators",
            **extra,
        },
        status=status,
    )


def _lockouts() -> QuerySet[AccessAttempt]:
    """Username + address pairs locked out of logging in now (django-axes)."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    return AccessAttempt.objects.filter(
        failures_since_start__gte=settings.AXES_FAILURE_LIMIT, attempt_time__gte=since
    ).order_by("-attempt_time")


@require_GET
@require_perm("manage_operators")
def operator_list(request: ConsoleRequest) -> HttpResponse:
    return _page(request, OperatorForm())


@require_POST
@require_perm("manage_operators")
def operator_create(request: ConsoleRequest) -> HttpResponse:
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
            OperatorAct.record(
                request.user, Act.ROLE_CHANGED, user.username, role=form.cleaned_data["role"]
            )
    except IntegrityError:
        form.add_error("username", "An operator with this name exists.")
        return _page(request, form, status=400)
    return _page(request, OperatorForm(), password=password, new_operator=user)


@require_POST
@require_perm("manage_operators")
def operator_role(request: ConsoleRequest, pk: int) -> HttpResponse:
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
    with transaction.atomic():
        grant(user, role)
        OperatorAct.record(request.user, Act.ROLE_CHANGED, user.username, role=role or "none")
    return _page(
        request, OperatorForm(), notice=f"{user.username} is now {role or 'without a role'}."
    )


@require_POST
@require_perm("manage_operators")
def lockout_lift(request: ConsoleRequest, pk: int) -> HttpResponse:
    attempt = get_object_or_404(AccessAttempt, pk=pk)
    with transaction.atomic():
        axes_reset(ip=attempt.ip_address, username=attempt.username)
        OperatorAct.record(
            request.user, Act.LOCKOUT_LIFTED, attempt.username or "", address=attempt.ip_address
        )
    return _page(
        request,
        OperatorForm(),
        notice=f"{attempt.username} may log in again from {attempt.ip_address}.",
    )


@require_GET
@require_perm("manage_operators")
def audit_log(request: ConsoleRequest) -> HttpResponse:
    """Every operator act, newest first, a page at a time."""
    acts = OperatorAct.objects.select_related("coordination")
    page = Paginator(acts, AUDIT_PAGE).get_page(request.GET.get("page"))
    return render(request, "coordination/audit.html", {"page": page, "nav": "audit"})
