"""Taking in what an agent sent, for both transports: its budget, then ingest in chunks.

    1. parse     the message (bounded depth) - refused as a whole when it is not JSON
    2. expand    a list or bundle into frames
    3. budget    each frame costs a token of the agent's budget (limits); frames past it are
                 refused one by one with `rate_limited`, nothing of them stored
    4. ingest    a chunk of frames at a time, yielding to the event loop between chunks, so
                 one agent's 500-frame list does not hold the others; a socket's chunks are
                 stored together with other sockets' (group commit, coordination.batching),
                 an HTTP request's in its own transactions

Replies come out per chunk, in the order the frames were sent: one ack or error per frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from coordination import batching, events, limits
from coordination.ingest import INTERNAL_ERROR, ingest
from coordination.models import Agent
from coordination.schemas import FrameError, Outcome, error_frame, expand

log = logging.getLogger(__name__)

RATE_LIMITED = "rate_limited"


@dataclass
class Chunk:
    """The replies to a run of frames, and the outcomes of those that reached ingest."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    rate_limited: int = 0


def frames_of(agent: Agent, data: Any) -> list[Any]:
    return expand(data, agent.name)


async def take_in(
    agent: Agent, items: list[Any], session_id: str, in_request: bool = False
) -> AsyncIterator[Chunk]:
    """Ingest `items` (already expanded) chunk by chunk, within the agent's budget.

    `in_request`: called from an async view, where Django's request cycle manages database
    connections (channels' `database_sync_to_async` would close them under it)."""
    for start in range(0, len(items), limits.CHUNK):
        part = items[start : start + limits.CHUNK]
        admitted = limits.admit(agent.pk, len(part))
        chunk = Chunk()
        if admitted:
            chunk.outcomes = await _ingest(agent, part[:admitted], session_id, in_request)
            chunk.replies = [outcome.to_frame() for outcome in chunk.outcomes]
        for item in part[admitted:]:
            chunk.rate_limited += 1
            chunk.replies.append(error_frame(RATE_LIMITED, too_fast(), _id_of(item)))
        yield chunk
        # Let other connections' messages in before the next chunk.
        await asyncio.sleep(0)


async def _ingest(
    agent: Agent, part: list[Any], session_id: str, in_request: bool
) -> list[Outcome]:
    try:
        if not in_request:
            # Sockets: group commit with the other sockets of this process (batching).
            return await batching.queue().ingest(agent, part, session_id)
        async with events.acollecting():
            outcomes: list[Outcome] = await sync_to_async(ingest)(agent, part, session_id)
            return outcomes
    except Exception:
        # ingest answers every frame itself, faults included; this is a fault around it
        # (the database thread itself). Logged once, answered per frame.
        log.exception("ingesting %d frames from %s failed", len(part), agent.name)
        return [
            Outcome(frame_id=_id_of(item), error=_internal(_id_of(item)))
            for item in part
            if not (isinstance(item, dict) and item.get("type") == "ack")
        ]


def _internal(frame_id: str | None) -> FrameError:
    return FrameError(*INTERNAL_ERROR, frame_id)


def too_fast() -> str:
    return (
        f"Over this agent's budget of {settings.LTP_RATE_LIMIT} frames/s (all its connections "
        "together); this frame was not stored. Slow down and send it again."
    )


def _id_of(item: Any) -> str | None:
    frame_id = item.get("id") if isinstance(item, dict) else None
    return frame_id if isinstance(frame_id, str) and frame_id.isprintable() else None
