"""The coordination domain: who is talking, the chain of what they said, and what it set in motion.

The chain (Frame) is the audit log. Everything else here (orientations, route requests,
escalations, deliveries) is state derived from frames, kept so the console and the router can
answer "what is true now" without replaying the chain.
"""

from coordination.models.agents import Agent, Connection, Presence
from coordination.models.audit import Act, OperatorAct
from coordination.models.base import (
    AGENT_NAME,
    HUMAN_PREFIX,
    REVOKED,
    check_agent_name,
    hash_token,
    one_of,
)
from coordination.models.chain import (
    Coordination,
    CoordinationStatus,
    Direction,
    Frame,
    Participant,
    ParticipantVia,
)
from coordination.models.notifications import (
    Channel,
    Notification,
    NotificationPreference,
    NotificationStatus,
)
from coordination.models.review import (
    ChainCheck,
    ChainState,
    TraceImport,
    ensure_writable,
    is_imported,
)
from coordination.models.routing import RoutingChange, RoutingRule
from coordination.models.work import (
    Approval,
    Attention,
    AttentionKind,
    Delivery,
    Escalation,
    EscalationStatus,
    Orientation,
    RequestStatus,
    RouteRequest,
)

__all__ = [
    "AGENT_NAME",
    "HUMAN_PREFIX",
    "REVOKED",
    "Act",
    "Agent",
    "Approval",
    "Attention",
    "AttentionKind",
    "ChainCheck",
    "ChainState",
    "Channel",
    "Connection",
    "Coordination",
    "CoordinationStatus",
    "Delivery",
    "Direction",
    "Escalation",
    "EscalationStatus",
    "Frame",
    "Notification",
    "NotificationPreference",
    "NotificationStatus",
    "OperatorAct",
    "Orientation",
    "Participant",
    "ParticipantVia",
    "Presence",
    "RequestStatus",
    "RouteRequest",
    "RoutingChange",
    "RoutingRule",
    "TraceImport",
    "check_agent_name",
    "ensure_writable",
    "hash_token",
    "is_imported",
    "one_of",
]
