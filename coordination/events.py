"""Channel-layer events, published only after the transaction that caused them commits.

Group names come from primary keys; event types use dots (Channels maps them to handler
names). Consumers treat these as hints: a viewer catches up from the database, an agent's
owed frames are also redelivered from the outbox on reconnect, so a dropped message (the
layers drop beyond a channel's capacity) delays but never loses anything.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

DASHBOARD = "dashboard"


def coordination_group(pk: int) -> str:
    return f"coordination.{pk}"


def agent_group(pk: int) -> str:
    return f"agent.{pk}"


class Events:
    """Collects events during a unit of work; the caller flushes them once it has committed."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def publish(self, group: str, message: dict[str, Any]) -> None:
        transaction.on_commit(lambda: self.pending.append((group, message)))

    def frame_appended(self, coordination_pk: int, seq: int | None) -> None:
        self.publish(
            coordination_group(coordination_pk),
            {"type": "coordination.changed", "coordination": coordination_pk, "seq": seq},
        )
        self.publish(DASHBOARD, {"type": "dashboard.changed", "coordination": coordination_pk})

    def deliver(self, agent_pk: int, delivery_pk: int, raw: str) -> None:
        self.publish(
            agent_group(agent_pk), {"type": "agent.deliver", "delivery": delivery_pk, "frame": raw}
        )

    async def flush(self) -> None:
        if not self.pending:
            return
        layer = get_channel_layer()
        pending, self.pending = self.pending, []
        for group, message in pending:
            await layer.group_send(group, message)

    def flush_sync(self) -> None:
        if self.pending:
            async_to_sync(self.flush)()
