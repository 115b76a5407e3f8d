"""The coordination domain: who is talking, the chain of what they said, and what it set in motion.

The chain (Frame) is the audit log. Everything else here (orientations, route requests,
escalations, deliveries) is state derived from frames, kept so the console and the router can
answer "what is true now" without replaying the chain.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import Q
from django.utils import timezone

from coordination.canonical import GENESIS, canonical, chain_hash_text, parse_json
from coordination.schemas import LTPDASH, PayloadView, view_of
from coordination.trace import trace_entry_line

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
        orientation: Frame | None = None,
        text: str | None = None,
    ) -> Frame:
        """Add `frame` to the end of this coordination's hash chain (PROTOCOL §6).

        The caller holds the row lock (`Coordination.lock`) inside a transaction. A duplicate
        (sender, id) raises IntegrityError before the head moves, and the caller's
        transaction rolls back whole.
        """
        text = text if text is not None else canonical(frame)
        now = timezone.now()
        seq = self.head_seq + 1
        digest = chain_hash_text(self.head_hash, text)
        stored = Frame.objects.create(
            coordination=self,
            seq=seq,
            prev_hash=self.head_hash,
            hash=digest,
            ltp_id=frame["id"],
            sender=sender,
            agent=agent,
            type=frame["type"],
            direction=direction,
            raw=text,
            ts=ts or now,
            received_at=now,
            session_id=session_id,
            warnings=warnings or [],
            orientation=orientation,
        )
        stored.__dict__["_data"] = frame
        self.head_seq, self.head_hash, self.last_activity = seq, digest, now
        Coordination.objects.filter(pk=self.pk).update(
            head_seq=seq, head_hash=digest, last_activity=now
        )
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


class Orientation(models.Model):
    """The orientation currently in force for an agent within a coordination."""

    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="orientations"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="orientations")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=200, blank=True)
    intent = models.TextField(blank=True)
    guardrails = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=200, blank=True)
    focus = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["coordination", "agent"], name="orientation_one_per_agent"
            ),
        ]


class RequestStatus(models.TextChoices):
    OPEN = "open", "open"  # waiting for the assigned agent's route_response
    ANSWERED = "answered", "answered"
    ESCALATED = "escalated", "escalated"  # handed to humans


class RouteRequest(models.Model):
    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="route_requests"
    )
    frame = models.OneToOneField(Frame, on_delete=models.CASCADE, related_name="route_request")
    requester = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="requests_made")
    ltp_id = models.CharField(max_length=200)  # the request frame's LTP id
    target = models.CharField(max_length=200, blank=True)
    need = models.TextField(blank=True)
    action = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=RequestStatus, default=RequestStatus.OPEN)
    assigned_to = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests_assigned"
    )
    # Agents already tried, in order, so the fallback ladder never goes round in a circle.
    tried = models.JSONField(default=list, blank=True)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    response_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "ltp_id"], name="route_request_requester_id_unique"
            ),
            one_of("status", RequestStatus, "route_request_status_valid"),
        ]


class EscalationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"


class Escalation(models.Model):
    """A question for humans: opened by an `escalate` branch, a request to `human`, or a
    critical action that must never run on an agent's word alone."""

    coordination = models.ForeignKey(
        Coordination, on_delete=models.CASCADE, related_name="escalations"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="escalations")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="escalations")
    route_request = models.ForeignKey(
        RouteRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="escalations"
    )
    # Which branch of the frame escalated (index), so one frame with two escalate branches
    # opens two escalations but a retried frame opens none.
    branch_index = models.IntegerField(default=-1)
    # The id of the frame the human decision answers (PROTOCOL §4: its in_reply_to).
    in_reply_to = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    action = models.CharField(max_length=200, blank=True)
    rule_id = models.CharField(max_length=100, blank=True)
    proposed_action = models.CharField(max_length=200, blank=True)
    proposed_args = models.JSONField(null=True, blank=True)
    amended_args = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=EscalationStatus, default=EscalationStatus.PENDING
    )
    tier = models.PositiveSmallIntegerField(default=1)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_by_name = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    decision_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A peer's answer that names a critical action: stored, but delivered to the requester
    # only once humans approve (never if they reject).
    held_frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.SET_NULL, related_name="holds"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["frame", "branch_index"], name="escalation_one_per_branch"
            ),
            one_of("status", EscalationStatus, "escalation_status_valid"),
        ]

    @property
    def is_pending(self) -> bool:
        return self.status == EscalationStatus.PENDING


class Approval(models.Model):
    """One operator's vote on an escalation that needs more than one approver."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["escalation", "user"], name="approval_one_per_user"),
        ]


class Delivery(models.Model):
    """The outbox: a frame owed to an agent. Sent when created and again on every reconnect
    until the agent acknowledges it, so a decision reaches its agent exactly once in effect."""

    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="deliveries")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="deliveries")
    ltp_id = models.CharField(max_length=200)  # the frame's LTP id: what the agent's ack names
    created_at = models.DateTimeField(default=timezone.now)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "agent"], name="delivery_once_per_agent"),
        ]
        indexes = [
            models.Index(
                fields=["agent", "created_at"],
                condition=Q(acked_at__isnull=True),
                name="delivery_unacked",
            ),
        ]


class RoutingRule(models.Model):
    """Who handles a need: an ordered list of agent names, first preferred."""

    need = models.CharField(max_length=200, unique=True)
    agents = models.JSONField(default=list)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["need"]

    def __str__(self) -> str:
        return f"{self.need} → {', '.join(self.agents)}"


class RoutingChange(models.Model):
    """The audit record of the routing table: every edit, by whom, before and after."""

    need = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_by_name = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at"]


class Act(models.TextChoices):
    DECIDED = "decided", "decided an escalation"
    TOOK_OVER = "took_over", "took a coordination over"
    HANDED_OFF = "handed_off", "handed a coordination off"
    ADMITTED = "admitted", "admitted an agent"
    ROUTING_CHANGED = "routing_changed", "changed the routing table"
    TOKEN_CREATED = "token_created", "created an agent and its token"
    TOKEN_ROTATED = "token_rotated", "rotated an agent's token"
    TOKEN_REVOKED = "token_revoked", "revoked an agent's token"
    SCOPE_CHANGED = "scope_changed", "changed an agent's scope"
    ROLE_CHANGED = "role_changed", "changed an operator's role"
    LOCKOUT_LIFTED = "lockout_lifted", "lifted a login lockout"


class OperatorAct(models.Model):
    """The operators' audit log: who did what, when. Acts that touch a coordination are also
    frames in its chain; this log also holds the ones that do not (tokens, roles, routing)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as written: the log outlives a deleted account, and commands act as an OS user.
    operator_name = models.CharField(max_length=200)
    act = models.CharField(max_length=20, choices=Act)
    subject = models.CharField(max_length=300, blank=True)
    coordination = models.ForeignKey(
        Coordination, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [one_of("act", Act, "operator_act_valid")]

    @classmethod
    def record(
        cls,
        operator: AbstractBaseUser | None,
        act: str,
        subject: str = "",
        *,
        coordination: Coordination | None = None,
        by: str = "",
        **detail: Any,
    ) -> OperatorAct:
        """Write one entry, in the caller's transaction (an act and its record stand or fall
        together)."""
        return cls.objects.create(
            operator=operator,
            operator_name=by or (operator.get_username() if operator else "?"),
            act=act,
            subject=subject[:300],
            coordination=coordination,
            detail=detail,
        )


class AttentionKind(models.TextChoices):
    LOOKING = "looking", "looking"
    ON_IT = "on_it", "on it"


class Attention(models.Model):
    """An operator looking at an escalation's card, or saying "I'm on it". Kept only while
    fresh: a live page renews its LOOKING rows while its socket is open; ON_IT lasts a few
    minutes unless said again. Expired rows are ignored, then deleted when next touched."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="attention")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    kind = models.CharField(max_length=10, choices=AttentionKind)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["escalation", "user", "kind"], name="attention_one_per_kind"
            ),
            one_of("kind", AttentionKind, "attention_kind_valid"),
        ]


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
