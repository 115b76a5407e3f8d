"""Coordinations and their chain: the head, the frames (the audit log), who takes part."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.utils import timezone

from coordination.canonical import GENESIS, canonical, chain_hash_text, parse_json
from coordination.models import prepared
from coordination.models.agents import Agent
from coordination.models.base import one_of
from coordination.schemas import PayloadView, view_of
from coordination.trace import trace_entry_line


class CoordinationStatus(models.TextChoices):
    OPEN = "open", "open"
    RESOLVED = "resolved", "resolved"


class Coordination(models.Model):
    """A unit of joint work (an incident, a reconciliation) and the head of its hash chain."""

    key = models.CharField(max_length=200, unique=True)
    status = models.CharField(
        max_length=10, choices=CoordinationStatus, default=CoordinationStatus.OPEN
    )
    # The free-text state from the latest focus_snapshot ("diagnosis pending human approval").
    state = models.CharField(max_length=500, blank=True)
    health = models.CharField(max_length=20, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    head_seq = models.IntegerField(default=-1)
    head_hash = models.CharField(max_length=64, default=GENESIS)
    latest_snapshot = models.ForeignKey(
        "Frame", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_deadline_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-last_activity"]
        # The console's permissions; roles (groups) bundle them, see coordination/roles.py.
        permissions = [
            ("watch", "Can watch coordinations"),
            ("decide", "Can decide escalations"),
            ("decide_tier2", "Can decide escalations moved to the admins' tier"),
            ("take_over", "Can take over and hand off coordinations"),
            ("manage_agents", "Can manage agents and tokens"),
            ("manage_routing", "Can edit the routing table"),
            ("manage_operators", "Can manage operators' roles"),
        ]
        constraints = [
            one_of("status", CoordinationStatus, "coordination_status_valid"),
        ]

    def __str__(self) -> str:
        return self.key

    @classmethod
    def lock(cls, key: str) -> Coordination:
        """The coordination named `key`, created by its first frame, with its row locked.

        Appends to one chain are serialised by this lock (on SQLite the IMMEDIATE
        transaction already holds the database write lock); different coordinations
        proceed in parallel on PostgreSQL.
        """
        locked = cls.objects.select_for_update(no_key=True).filter(key=key).first()
        if locked is not None:
            return locked
        coordination, _ = cls.objects.get_or_create(key=key)
        return cls.locked(coordination.pk)

    @classmethod
    def locked(cls, pk: int) -> Coordination:
        """The coordination with its row locked for appending to its chain.

        FOR NO KEY UPDATE (PostgreSQL): it serialises appenders like FOR UPDATE, but does not
        block other transactions inserting rows that merely reference it (frames elsewhere,
        deliveries, escalations), which take KEY SHARE locks; FOR UPDATE would turn those
        waits into lock-order deadlocks with ingest.
        """
        return cls.objects.select_for_update(no_key=True).get(pk=pk)

    def append(
        self,
        frame: dict[str, Any],
        *,
        sender: str,
        direction: str,
        agent: Agent | None = None,
        session_id: str = "",
        warnings: list[str] | None = None,
        ts: datetime | None = None,
        orientation_id: int | None = None,
        text: str | None = None,
        write_head: bool = True,
        insert: Callable[[Frame], None] = prepared.insert,
    ) -> Frame:
        """Add `frame` to the end of this coordination's hash chain (PROTOCOL §6).

        The caller holds the row lock (`Coordination.lock`) inside a transaction. A duplicate
        (sender, id) raises IntegrityError before the head moves, and the caller's
        transaction rolls back whole. A batch (coordination.pending) writes the head itself
        (`write_head=False`: it moves in memory only) and inserts the frame later (`insert`).
        """
        text = text if text is not None else canonical(frame)
        now = timezone.now()
        seq = self.head_seq + 1
        digest = chain_hash_text(self.head_hash, text)
        stored = Frame(
            coordination_id=self.pk,  # with the objects cached (attach), below
            agent_id=agent.pk if agent is not None else None,
            seq=seq,
            prev_hash=self.head_hash,
            hash=digest,
            ltp_id=frame["id"],
            sender=sender,
            type=frame["type"],
            direction=direction,
            raw=text,
            ts=ts or now,
            received_at=now,
            session_id=session_id,
            warnings=warnings or [],
            orientation_id=orientation_id,
        )
        prepared.attach(stored, "coordination", self)
        prepared.attach(stored, "agent", agent)
        # Prepared statements (models.prepared): this runs for every frame.
        insert(stored)
        stored.__dict__["_data"] = frame
        self.head_seq, self.head_hash, self.last_activity = seq, digest, now
        if write_head:
            prepared.update(self, ["head_seq", "head_hash", "last_activity"])
        return stored

    def trace_lines(self) -> Iterator[str]:
        """This chain as an LTP audit trace (PROTOCOL §6), one JSON line per frame, streamed."""
        rows = (
            self.frames.order_by("seq")
            .values_list(
                "seq", "received_at", "direction", "session_id", "raw", "prev_hash", "hash"
            )
            .iterator(chunk_size=2000)
        )
        for seq, received_at, direction, session_id, raw, prev_hash, digest in rows:
            assert seq is not None  # every frame of a coordination is a chain entry
            yield trace_entry_line(
                seq,
                int(received_at.timestamp() * 1000),
                direction,
                session_id,
                raw,
                prev_hash,
                digest,
            )

    def has_participant(self, agent: Agent) -> bool:
        """Whether `agent` may speak in and read this coordination: it opened it, was routed
        into it, was admitted by an operator, or its token's scope covers it."""
        return agent.covers(self.key) or self.participants.filter(agent=agent).exists()

    def join(self, agent: Agent, via: str, by: AbstractBaseUser | None = None) -> bool:
        """Make `agent` a participant (once); True when it was not one yet."""
        _, created = Participant.objects.get_or_create(
            coordination=self, agent=agent, defaults={"via": via, "admitted_by": by}
        )
        return created

    def escalation_deadline(self, now: datetime | None = None) -> datetime:
        seconds = self.escalation_deadline_seconds or settings.ESCALATION_DEADLINE
        return (now or timezone.now()) + timedelta(seconds=seconds)


class ParticipantVia(models.TextChoices):
    OPENED = "opened", "opened it"
    ROUTED = "routed", "routed into it"
    ADMITTED = "admitted", "admitted by an operator"


class Participant(models.Model):
    """An agent that may speak in a coordination (beyond those its token's scope covers)."""

    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="participants"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="participations")
    via = models.CharField(max_length=10, choices=ParticipantVia)
    admitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["coordination", "agent"], name="participant_once"),
            one_of("via", ParticipantVia, "participant_via_valid"),
        ]


class Direction(models.TextChoices):
    IN = "in", "in"
    OUT = "out", "out"


class Frame(models.Model):
    """One LTP frame. With a coordination it is an entry of that coordination's hash chain.

    `raw` holds the frame as canonical JSON text: exactly the bytes that were hashed, so an
    export is byte-stable whatever the database does to JSON (jsonb reorders keys and cannot
    hold NUL). Frames without a coordination (a bare hello) have no seq and no hash.
    """

    coordination = models.ForeignKey(
        Coordination, null=True, blank=True, on_delete=models.CASCADE, related_name="frames"
    )
    seq = models.IntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    ltp_id = models.CharField(max_length=200)
    sender = models.CharField(max_length=210)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    type = models.CharField(max_length=100)
    direction = models.CharField(max_length=3, choices=Direction, default=Direction.IN)
    raw = models.TextField()
    ts = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    session_id = models.CharField(max_length=64, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # The sender's orientation frame in force when this frame was received: reviewers see
    # which guardrails applied at each step.
    orientation = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["coordination", "seq"]
        constraints = [
            # Idempotency: the same (sender, id) is stored once, whichever transport it came by.
            models.UniqueConstraint(fields=["sender", "ltp_id"], name="frame_sender_id_unique"),
            models.UniqueConstraint(fields=["coordination", "seq"], name="frame_chain_seq_unique"),
            one_of("direction", Direction, "frame_direction_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.coordination_id}#{self.seq} {self.type} from {self.sender}"

    @property
    def data(self) -> dict[str, Any]:
        """The stored frame as a dict (parsed on demand; the timeline parses only what it shows)."""
        cached = self.__dict__.get("_data")
        if cached is None:
            cached = parse_json(self.raw)
            self.__dict__["_data"] = cached
        return cached

    @property
    def payload(self) -> dict[str, Any]:
        payload = self.data.get("payload")
        return payload if isinstance(payload, dict) else {}

    @property
    def view(self) -> PayloadView | None:
        """The payload read through its type's lenient view (schemas), parsed once."""
        if "_view" not in self.__dict__:
            self.__dict__["_view"] = view_of(self.type, self.payload)
        return self.__dict__["_view"]
