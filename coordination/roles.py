"""Operator roles: Django groups bundling the console's permissions.

viewer watches; approver also decides escalations, takes over and hands off; admin also
manages agents and tokens, the routing table, and operators.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User

VIEWER, APPROVER, ADMIN = "viewer", "approver", "admin"
ROLES: dict[str, list[str]] = {
    VIEWER: ["watch"],
    APPROVER: ["watch", "decide", "take_over"],
    ADMIN: [
        "watch",
        "decide",
        "decide_tier2",
        "take_over",
        "manage_agents",
        "manage_routing",
        "manage_operators",
        "import_trace",
    ],
}


def ensure_roles() -> dict[str, Group]:
    groups = {}
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = Permission.objects.filter(
            content_type__app_label="coordination", codename__in=codenames
        )
        group.permissions.set(perms)
        groups[role] = group
    return groups


def grant(user: User, role: str | None) -> None:
    """Give `user` exactly one role; None takes every role away (the account stays)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    groups = ensure_roles()
    user.groups.remove(*[g for name, g in groups.items() if name != role])
    if role is not None:
        user.groups.add(groups[role])


def role_of(user: User) -> str | None:
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, APPROVER, VIEWER):
        if role in names:
            return role
    return "admin" if user.is_superuser else None
