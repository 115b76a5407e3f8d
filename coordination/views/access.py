"""Who may see and do what in the console: one decorator, used by every view."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


def require_perm(codename: str):
    """Anonymous visitors go to the login page; operators without `codename` get 403.

    An htmx request whose session expired is told to load the login page as a whole page,
    instead of swapping the login form into a fragment.
    """
    perm = f"coordination.{codename}"

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(resolve_url(settings.LOGIN_URL))
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(perm):
                raise PermissionDenied(f"You need the {codename} permission.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
