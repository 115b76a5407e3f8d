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
from collections.abc import AsyncIterator, Awaitable, Callable
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
        yield await queued(agent, items[start : start + limits.CHUNK], session_id, in_request)()
        # Let other connections' messages in before the next chunk.
        await asyncio.sleep(0)


def queued(
    agent: Agent, part: list[Any], session_id: str, in_request: bool = False
) -> Callable[[], Awaitable[Chunk]]:
    """One chunk of frames, budgeted, and for a socket queued for storing now (a socket's
    frames are stored in the order of the calls, with other sockets' frames: group commit,
    coordination.batching); the function returned gives its Chunk once stored. Consumers
    call it for a message of one chunk without waiting for the message before (read-ahead).
    """
    admitted = limits.admit(agent.pk, len(part))
    taken = part[:admitted]
    stored: Awaitable[list[Outcome]] | None = None
    if taken:
        stored = (
            _alone(agent, taken, session_id)
            if in_request
            else batching.queue().submit(agent, taken, session_id)
        )

    async def chunk() -> Chunk:
        done = Chunk()
        if stored is not None:
            done.outcomes = await _answered(agent, taken, stored)
            done.replies = [outcome.to_frame() for outcome in done.outcomes]
        for item in part[admitted:]:
            done.rate_limited += 1
            done.replies.append(error_frame(RATE_LIMITED, too_fast(), _id_of(item)))
        return done

    return chunk


async def _alone(agent: Agent, part: list[Any], session_id: str) -> list[Outcome]:
    async with events.acollecting():
        outcomes: list[Outcome] = await sync_to_async(ingest)(agent, part, session_id)
        return outcomes


async def _answered(
    agent: Agent, part: list[Any], stored: Awaitable[list[Outcome]]
) -> list[Outcome]:
    try:
        return await stored
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
