"""Which agents are owed frames, read once per check for all the agent sockets of a process.

Each agent socket looks in its outbox every OUTBOX_CHECK_SECONDS for frames no event
announced (written by another process, or dropped by a full channel). One query per check
says which agents are owed anything at all (the unacked index); only their sockets look
further.
"""

from __future__ import annotations

import asyncio
import math
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from coordination import outbox


class _Owing:
    """Which agents are owed anything, read once for all the agent sockets of this process
    (one query per check, not one per socket: 1,000 idle sockets asked 500 times a second).
    A reading that started less than half a check ago serves every socket that asks, so a
    frame owed is found within one and a half checks."""

    def __init__(self) -> None:
        self.read_at = -math.inf
        self.owed: set[int] = set()
        self.lock = asyncio.Lock()

    async def agents(self) -> set[int]:
        loop = asyncio.get_running_loop()
        async with self.lock:
            if loop.time() - self.read_at >= settings.OUTBOX_CHECK_SECONDS / 2:
                started = loop.time()
                self.owed = await database_sync_to_async(outbox.agents_owed)()
                self.read_at = started
        return self.owed


_owings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Owing] = weakref.WeakKeyDictionary()


def owing() -> _Owing:
    """The running event loop's reading (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    found = _owings.get(loop)
    if found is None:
        found = _owings[loop] = _Owing()
    return found
