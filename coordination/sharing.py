"""What viewers of live pages share: the threads they render on, and one computation for
those that ask for the same thing at about the same time.

Live pages render on a small pool of threads of their own (`rendered`), not on the sync
thread that ingests agents' frames, so a flood of frames does not hold the screens back, nor
the screens the frames. Each thread holds its own database connection: on SQLite, WAL lets
readers run beside the writer and IMMEDIATE writes wait their turn; on PostgreSQL each is one
more connection. Connections are tidied before and after each call, as
`database_sync_to_async` does after any request.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.db import connections

# Threads that render live pages (the sync thread ingests agents' frames). Each holds its own
# database connection (SQLite: WAL readers beside the writer, IMMEDIATE writes wait their
# turn; PostgreSQL: a connection each), closed when too old as after any request.
LIVE_RENDER_THREADS = 2
# Renders hold the GIL between their queries; ingest's thread and the event loop release it
# on every statement and socket write, and each time wait for a render to hand it back: up to
# Python's switch interval (5 ms by default), several times per frame acked. Once renders
# run beside them, the process hands the GIL over sooner (bench_live, 10 viewers at 100
# frames/s, four runs each way: frame -> row p50 about 8 ms instead of 15, ack p99 about
# half, for some 5% more CPU).
SWITCH_SECONDS = 0.0005

T = TypeVar("T")
_clock = itertools.count(1)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def tick() -> int:
    """The live pages' clock: a viewer notes a tick when woken; a computation notes one when
    it starts, so "started after I was woken" is `started > asked`."""
    return next(_clock)


# A render asked for and not yet taken by a thread: the render, its tick, where its result goes.
_Call = tuple[Callable[[int], Any], int, "asyncio.Future[Any]"]


@dataclass(eq=False)
class _Queue:
    """The renders asked for on one event loop and not yet taken by a thread."""

    calls: list[_Call] = field(default_factory=list)
    draining: int = 0


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
_draining: set[asyncio.Task[None]] = set()


async def rendered(render: Callable[[int], T], asked: int) -> T:
    """`render(asked)` on the live pages' own threads, database connections tidied as
    `database_sync_to_async` does.

    One event wakes every viewer of a page at once: their renders go to a thread together,
    in one hop, as many as were asked for when a thread takes them (most share one
    computation, see `Shared`), rather than one hop to a thread and back each."""
    loop = asyncio.get_running_loop()
    queue = _queues.setdefault(loop, _Queue())
    future: asyncio.Future[T] = loop.create_future()
    queue.calls.append((render, asked, future))
    if queue.draining < LIVE_RENDER_THREADS:
        queue.draining += 1
        task = loop.create_task(_drain(queue))
        _draining.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(_draining.discard)
    return await future


async def _drain(queue: _Queue) -> None:
    """Hand what is queued to a thread, in one call, until nothing is."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(LIVE_RENDER_THREADS, thread_name_prefix="live-render")
            if sys.getswitchinterval() > SWITCH_SECONDS:
                sys.setswitchinterval(SWITCH_SECONDS)
    run = database_sync_to_async(_run_all, thread_sensitive=False, executor=_pool)
    try:
        while queue.calls:
            calls, queue.calls = queue.calls, []
            try:
                outcomes = await run(calls)
            except BaseException as error:  # the hop itself failed: no render waits forever
                outcomes = [(False, error)] * len(calls)
                if not isinstance(error, Exception):
                    _settle(calls, outcomes)
                    raise
            _settle(calls, outcomes)
    finally:
        queue.draining -= 1


def _run_all(calls: list[_Call]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for render, asked, _ in calls:
        try:
            outcomes.append((True, render(asked)))
        except Exception as error:  # the viewer's own loop logs it and tries again
            outcomes.append((False, error))
    return outcomes


def _settle(calls: list[_Call], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, _, future), (ok, value) in zip(calls, outcomes, strict=True):
        if future.done():  # the viewer left meanwhile
            continue
        if ok:
            future.set_result(value)
        elif isinstance(value, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(value)


def stop_rendering() -> None:
    """Close the render threads' database connections, then the threads, and forget what
    was shared (a test, before its database is flushed or dropped: PostgreSQL refuses to drop
    one still connected to, and the next test's rows may reuse primary keys)."""
    global _pool
    SHARED.clear()
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        close_pool(pool, LIVE_RENDER_THREADS)


def close_pool(pool: ThreadPoolExecutor, threads: int) -> None:
    """Close the database connection of each of `pool`'s `threads`, then the threads."""
    # Each thread takes one task: the barrier holds the first until the others have started.
    barrier = threading.Barrier(threads)

    def close() -> None:
        connections.close_all()
        barrier.wait(timeout=5)

    for _ in range(threads):
        pool.submit(close)
    pool.shutdown(wait=True)


@dataclass
class _Flight:
    started: int
    finished: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    failed: bool = False


class Shared:
    """One computation per key for the viewers that ask for it at about the same time.

    A viewer asks with the tick at which it was woken (0: any result for this key will do,
    when the key itself says which state it is, as a fingerprint does). It gets the result
    of the last computation for the key if that started after the tick, waiting for it if it
    still runs; otherwise it computes, and viewers that ask later share its result."""

    def __init__(self, size: int = 512) -> None:
        self._flights: OrderedDict[Hashable, _Flight] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size
        self.computed: Counter[str] = Counter()  # by the key's first item, for tests
        # What is kept between computations and brought up to date (see `keep`).
        self._kept: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()

    def kept(self, key: Hashable) -> Any:
        """The value last kept for `key` (None if none)."""
        with self._lock:
            found = self._kept.get(key)
        return None if found is None else found[1]

    def keep(self, key: Hashable, rank: int, value: Any) -> None:
        """Keep `value` for `key` unless one further along (a higher `rank`, as the seq a
        digest of a chain is up to) is kept already: threads bringing it up to date at once
        each keep theirs, the furthest wins."""
        with self._lock:
            found = self._kept.get(key)
            if found is None or found[0] <= rank:
                self._kept[key] = (rank, value)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size * 8:
                    self._kept.popitem(last=False)

    def get(self, key: tuple[Hashable, ...], asked: int, compute: Callable[[], T]) -> T:
        return self.latest(key, asked, None, compute)[0]

    def latest(
        self, key: tuple[Hashable, ...], asked: int, since: int | None, compute: Callable[[], T]
    ) -> tuple[T, bool, int]:
        """As `get`, but when no computation started after `asked`, one that started after
        tick `since` (when what the viewer shows was read) will do too, being no older: the
        result, whether it is fresh (if not, the viewer renders again), and the tick at which
        it was read. Viewers woken at slightly different times so keep to the same results."""
        with self._lock:
            flight = self._flights.get(key)
            fresh = flight is not None and not flight.failed and flight.started > asked
            stale = (
                not fresh
                and since is not None
                and flight is not None
                and not flight.failed
                and flight.started > since
            )
            if not (fresh or stale):
                flight = self._flights[key] = _Flight(tick())
                self._flights.move_to_end(key)
                while len(self._flights) > self.size:
                    self._flights.popitem(last=False)
        assert flight is not None
        if fresh or stale:
            flight.done.wait()
            if not flight.failed:
                return flight.value, fresh, flight.finished
            return compute(), True, tick()
        try:
            flight.value = compute()
            self.computed[str(key[0])] += 1
        except BaseException:
            flight.failed = True
            raise
        finally:
            flight.finished = tick()
            flight.done.set()
        return flight.value, True, flight.finished

    def clear(self) -> None:
        with self._lock:
            self._flights.clear()
            self._kept.clear()
            self.computed.clear()


SHARED = Shared()
