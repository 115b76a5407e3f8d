"""Group commit: what the agent sockets of one process send is stored one transaction per batch.

While a batch is in the database thread, frames arriving from the sockets wait (an agent's
socket reads ahead, so its frames in flight wait together: coordination.readahead); as soon
as it has committed, everything that waited goes in as the next batch, in one transaction
and one hop to the thread. Under load the batches grow by themselves; a lone frame (nothing
running, nothing waiting) starts its batch at once, so there is no timer on the lone agent's
path.

    1. wait      a socket's frames join its lane's queue (at most MAX_BATCH per batch)
    2. store     ingest.ingest_batch: one transaction, optimistic (no savepoint, no duplicate
                 check per frame); the batch's agents and coordinations locked once, the
                 frames inserted together, heads, orientations and agents written once
                 (coordination.pending); anything but plain success runs it frame by frame
    3. answer    only after COMMIT: every frame's outcome goes back to its socket, and the
                 batch's events are published (coordination.events)

Several lanes (LTP_INGEST_LANES, one by default) store batches side by side, each on its own
thread and connection, so their round trips to PostgreSQL overlap; their threads also take
turns at the GIL with the event loop, which today costs more than the overlap gains.

"Acknowledged" still means "stored": no outcome leaves before the COMMIT it depends on, and a
batch whose COMMIT fails is run again frame by frame (ingest_batch), each frame in its own
transaction, so one frame's fault costs the others only time.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from coordination import events
from coordination.ingest import Work, ingest_batch
from coordination.models import Agent
from coordination.schemas import Outcome, named_coordination
from coordination.sharing import close_pool

# Frames per transaction at most: bounds how long a batch holds the write lock (SQLite) and
# how long the first frame of a batch waits for its ack (a full batch stores in ~30 ms on
# today's 2-core machine). Larger batches hold more frames of each agent, whose rows are
# locked and written once a batch (coordination.pending): 64 -> 256 cut the CPU per frame of
# ten agents' orientations by about a third (in-process, same minute).
MAX_BATCH = 256


@dataclass
class _Job:
    work: Work
    done: asyncio.Future[list[Outcome]]


class _Lane:
    """One batch at a time: the frames that wait while it is stored are the next batch."""

    def __init__(self, store: Callable[[list[Work]], Awaitable[list[list[Outcome]]]]) -> None:
        self.store = store
        self.waiting: list[_Job] = []
        self.draining: asyncio.Task[None] | None = None

    def submit(self, work: Work) -> asyncio.Future[list[Outcome]]:
        """Queue `work` now (frames are stored in the order they are submitted); the future
        holds its outcomes once its batch has committed."""
        loop = asyncio.get_running_loop()
        job = _Job(work, loop.create_future())
        self.waiting.append(job)
        if self.draining is None or self.draining.done():
            self.draining = loop.create_task(self._drain())
        return job.done

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
                    results = await self.store([j.work for j in batch])
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


class GroupCommit:
    """The lanes of one event loop (one daphne process serves from one loop).

    With one lane (the default) batches run on Django's thread for sync code, like every
    other database call of the process. With several,
    each lane has a thread and a connection of its own, and a frame goes to the lane of the
    coordination it names: one coordination's frames queue in one lane, so batches in
    different lanes rarely wait for each other's row locks."""

    def __init__(self, lanes: int) -> None:
        self.threads: ThreadPoolExecutor | None = None
        if lanes == 1:
            store = database_sync_to_async(ingest_batch)
        else:
            self.threads = ThreadPoolExecutor(lanes, thread_name_prefix="ltpdash-ingest")
            store = database_sync_to_async(
                ingest_batch, thread_sensitive=False, executor=self.threads
            )
        self.lanes = [_Lane(store) for _ in range(lanes)]

    def close(self) -> None:
        """Close the lanes' database connections, then their threads."""
        if self.threads is not None:
            close_pool(self.threads, len(self.lanes))

    def lane_of(self, agent: Agent, items: list[Any]) -> int:
        """The lane these frames go to (one lane stores what it is given in order)."""
        return _lane_of(agent, items, len(self.lanes))

    def submit(
        self, agent: Agent, items: list[Any], session_id: str
    ) -> asyncio.Future[list[Outcome]]:
        return self.lanes[self.lane_of(agent, items)].submit(Work(agent, items, session_id))


def _lane_of(agent: Agent, items: list[Any], lanes: int) -> int:
    """By the coordination the first frame names (as sent: only a hint for spreading the
    work; the row locks keep the chain right whichever lane stores a frame), else by agent."""
    if lanes == 1:
        return 0
    key = named_coordination(items[0]) if items else None
    return zlib.crc32(key.encode()) % lanes if key is not None else agent.pk % lanes


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = (
    weakref.WeakKeyDictionary()
)


def queue() -> GroupCommit:
    """The running event loop's queue (tests run several loops in one process)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:  # the usual case: one loop per process
        return last[1]
    group = _queues.get(loop)
    if group is None:
        group = _queues[loop] = GroupCommit(settings.LTP_INGEST_LANES)
        if group.threads is not None:
            _threaded.append(group)
    _last = (weakref.ref(loop), group)
    return group


_last: tuple[weakref.ref[asyncio.AbstractEventLoop], GroupCommit] | None = None
_threaded: list[GroupCommit] = []  # groups with lane threads, kept to be closed (stop_lanes)


def stop_lanes() -> None:
    """Close every lane thread's database connection, and the threads (a test, before its
    database is dropped: PostgreSQL refuses to drop one still connected to)."""
    global _last
    _last = None
    while _threaded:
        _threaded.pop().close()
    _queues.clear()
