"""What every model module shares: names that mean people or ltpdash, agent names, state checks."""

from __future__ import annotations

import hashlib
import re

from django.db import models
from django.db.models import Q

from coordination.schemas import LTPDASH

HUMAN_PREFIX = "human:"
# A revoked agent's token hash: no token hashes to it (a SHA-256 is 64 hex digits).
REVOKED = "revoked:"
# Agent names: a letter or digit, then letters, digits, '.', '_', '-' (no '/', ':', spaces or
# look-alikes); names starting with `human:` or equal to `ltpdash` speak for people / ltpdash.
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_agent_name(name: str) -> None:
    """Refuse names an agent may not have: reserved ones, and anything outside AGENT_NAME."""
    if name.lower() == LTPDASH or name.lower().startswith(HUMAN_PREFIX):
        raise ValueError(f"{name!r} is reserved: ltpdash and human:… speak for ltpdash and people.")
    if not AGENT_NAME.fullmatch(name):
        raise ValueError(
            "An agent name is 1–100 characters: a letter or digit, then letters, digits, "
            "'.', '_' or '-'."
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def one_of(field: str, choices: type[models.TextChoices], name: str) -> models.CheckConstraint:
    """A database check that `field` holds one of `choices` (states are TextChoices)."""
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)
