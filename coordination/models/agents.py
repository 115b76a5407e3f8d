"""Agents: software participants, their tokens, scopes and presence."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from django.conf import settings
from django.db import models
from django.utils import timezone

from coordination.models.base import REVOKED, check_agent_name, hash_token, one_of


class Presence(models.TextChoices):
    ONLINE = "online", "online"
    SILENT = "silent", "silent"
    OFFLINE = "offline", "offline"


class Agent(models.Model):
    """A software participant. Authenticated by a token of which only the hash is stored."""

    name = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=200, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    presence = models.CharField(max_length=10, choices=Presence, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    # Presence is computed from this stored deadline (indexed), never by scanning every
    # agent's last_seen: the sweeper claims rows whose deadline has passed.
    heartbeat_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    # The coordination this agent last declared (orientation or hello carrying one), PROTOCOL §3.
    current_coordination = models.ForeignKey(
        "Coordination", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_ts_ms = models.BigIntegerField(null=True, blank=True)
    # Coordinations this agent may speak in without being routed or admitted: glob patterns
    # of coordination ids ("incident-*"), comma-separated; empty = none.
    scope = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            one_of("presence", Presence, "agent_presence_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def create_with_token(cls, name: str, role: str = "", scope: str = "") -> tuple[Agent, str]:
        """Create an agent and return its token. The token is shown once and never stored.

        Raises ValueError for a name agents may not have (`check_agent_name`)."""
        check_agent_name(name)
        token = "ltp_" + secrets.token_urlsafe(32)
        agent = cls.objects.create(name=name, role=role, scope=scope, token_hash=hash_token(token))
        return agent, token

    def covers(self, coordination_key: str) -> bool:
        """Whether this agent's token scope lets it speak in `coordination_key`."""
        patterns = (p.strip() for p in self.scope.split(","))
        return any(p and fnmatchcase(coordination_key, p) for p in patterns)

    def rotate_token(self) -> str:
        """A new token; the old one stops working, on open sockets too (they close)."""
        token = "ltp_" + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.save(update_fields=["token_hash"])
        return token

    def revoke_token(self) -> None:
        """No token works any more (open sockets close) until the next rotation."""
        self.token_hash = REVOKED + secrets.token_hex(16)
        self.save(update_fields=["token_hash"])

    @property
    def revoked(self) -> bool:
        return self.token_hash.startswith(REVOKED)

    @classmethod
    def authenticate(cls, token: str | None) -> Agent | None:
        if not token:
            return None
        return cls.objects.filter(token_hash=hash_token(token)).first()

    @classmethod
    def from_authorization(cls, header: str | bytes | None) -> Agent | None:
        """The agent an `Authorization: Bearer <token>` header names (socket or HTTP)."""
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        scheme, _, token = (header or "").partition(" ")
        return cls.authenticate(token.strip()) if scheme.lower() == "bearer" else None

    def next_heartbeat_deadline(self, now: datetime | None = None) -> datetime:
        return (now or timezone.now()) + timedelta(seconds=settings.HEARTBEAT_TIMEOUT)


class Connection(models.Model):
    """One live agent socket. Presence derives from these rows: the socket refreshes
    `alive_until`, its disconnect deletes it, and the sweeper deletes rows a dead process left."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="live_connections")
    channel_name = models.CharField(max_length=200)
    server = models.CharField(max_length=200)  # host:pid of the daphne that holds it
    opened_at = models.DateTimeField(default=timezone.now)
    alive_until = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["agent", "alive_until"], name="connection_agent_alive")]
