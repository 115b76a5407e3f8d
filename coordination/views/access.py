"""Who may see and do what in the console: one decorator, used by every view."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


class ConsoleRequest(HttpRequest):
    """A request `require_perm` let through: a logged-in operator, maybe from htmx."""

    user: User
    htmx: HtmxDetails


View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def require_perm(codename: str) -> Callable[[View], View]:
    """Anonymous visitors go to the login page; operators without `codename` get 403.

    An htmx request whose session expired is told to load the login page as a whole page,
    instead of swapping the login form into a fragment.
    """
    perm = f"coordination.{codename}"

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(resolve_url(settings.LOGIN_URL))
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(perm):
                raise PermissionDenied(f"You need the {codename} permission.")
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def locked_out(
    request: HttpRequest, response: HttpResponseBase | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer to a login while its username + address is locked out."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {"minutes": minutes, "username": username}
    return render(request, "registration/locked.html", context, status=429)
