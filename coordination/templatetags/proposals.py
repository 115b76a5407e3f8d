"""Template filters for what approval does (coordination/proposals.py): the proposal's
arguments as text, as editable JSON, and what a decision amended. All return plain text,
which the templates autoescape like any agent text."""

from __future__ import annotations

import json
from typing import Any

from django import template

from coordination import proposals
from coordination.models import Frame

register = template.Library()


@register.filter
def args_summary(args: dict[str, Any] | None) -> str:
    return proposals.args_summary(args)


@register.filter
def args_json(args: dict[str, Any] | None) -> str:
    return json.dumps(args or {}, ensure_ascii=False, indent=1)


@register.filter
def amended_diff(frame: Frame) -> list[str]:
    """For a decision frame whose approve branch amended the arguments: what changed."""
    branches = frame.payload.get("branches") if frame.type == "route_response" else None
    if not isinstance(branches, list) or not branches or not isinstance(branches[0], dict):
        return []
    amended = branches[0].get("amended_args")
    if not isinstance(amended, dict):
        return []
    original = branches[0].get("args")
    return proposals.args_diff(original if isinstance(original, dict) else None, amended)
