"""Group commit: what the agent sockets of one process send is stored one transaction per batch.

While a batch is in the database thread, frames arriving from other sockets wait; as soon as
it has committed, everything that waited goes in as the next batch, in one transaction and one
hop to the thread. Under load the batches grow by themselves; a lone frame (nothing running,
nothing waiting) starts its batch at once, so there is no timer on the lone agent's path.

    1. wait      a socket's frames join the process's queue (at most MAX_BATCH per batch)
    2. store     ingest.ingest_batch: one transaction, one savepoint per frame (a refused
                 frame rolls back alone), the chain heads and locks taken once per batch
    3. answer    only after COMMIT: every frame's outcome goes back to its socket, and the
                 batch's events are published (coordination.events)

"Acknowledged" still means "stored": no outcome leaves before the COMMIT it depends on, and a
batch whose COMMIT fails is run again frame by frame (ingest_batch), each frame in its own
transaction, so one frame's fault costs the others only time.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from coordination import events
from coordination.ingest import Work, ingest_batch
from coordination.models import Agent
from coordination.schemas import Outcome

# Frames per transaction at most: bounds how long a batch holds the write lock (SQLite) and
# how long the first frame of a batch waits for its ack.
MAX_BATCH = 64


@dataclass
class _Job:
    work: Work
    done: asyncio.Future[list[Outcome]]


class GroupCommit:
    """The queue of one event loop (one daphne process serves from one loop)."""

    def __init__(self) -> None:
        self.waiting: list[_Job] = []
        self.draining: asyncio.Task[None] | None = None

    async def ingest(self, agent: Agent, items: list[Any], session_id: str) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        job = _Job(Work(agent, items, session_id), loop.create_future())
        self.waiting.append(job)
        if self.draining is None or self.draining.done():
            self.draining = loop.create_task(self._drain())
        return await job.done

    def _next_batch(self) -> list[_Job]:
        taken, frames = 0, 0
        for job in self.waiting:
            if taken and frames + len(job.work.items) > MAX_BATCH:
                break
            taken += 1
            frames += len(job.work.items)
        batch, self.waiting = self.waiting[:taken], self.waiting[taken:]
        return batch

    async def _drain(self) -> None:
        while self.waiting:
            batch = self._next_batch()
            try:
                async with events.acollecting():
                    results = await database_sync_to_async(ingest_batch)([j.work for j in batch])
            except asyncio.CancelledError:
                for job in [*batch, *self.waiting]:
                    job.done.cancel()
                raise
            except Exception as exc:
                # A fault around the batch (the database thread itself): each waiting socket
                # answers its frames as not stored (intake does), and the queue goes on.
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            for job, outcomes in zip(batch, results, strict=True):
                if not job.done.done():  # the socket may have gone meanwhile
                    job.done.set_result(outcomes)


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = (
    weakref.WeakKeyDictionary()
)


def queue() -> GroupCommit:
    """The running event loop's queue (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    group = _queues.get(loop)
    if group is None:
        group = _queues[loop] = GroupCommit()
    return group
