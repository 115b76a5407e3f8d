"""An agent socket reads ahead: it takes in its next message while the one before is stored.

Channels hands a consumer one message at a time and waits for its handler, so a socket whose
handler waited for the database had one frame in its process's batch (group commit) at a
time, however many frames its agent kept in flight: an agent's frames never shared a batch.
Now a plain message (one frame, no hello, an agent within its budget) is budgeted and queued
for storing while the handler runs, in the order the socket received it, and the handler
returns; the message's reply waits for the replies of the messages before it:

    message 1   queued -> stored ----------> replied
    message 2     queued -> stored (same batch) -> replied after 1
    message 3  (a list, a hello, ...) waits until 1 and 2 are replied, then runs as before

At most READ_AHEAD messages of one socket wait for their replies; the next message waits for
room (backpressure: an agent cannot queue more than that in the process).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

# Messages of one socket queued and not yet answered, at most (the benchmark's agents keep
# 32 frames in flight).
READ_AHEAD = 32


class ReadAhead:
    """The replies a socket owes, sent in the order its messages came, by one task."""

    def __init__(self) -> None:
        self.owed: deque[Callable[[], Awaitable[None]]] = deque()
        self.replying: asyncio.Task[None] | None = None
        self.freed: asyncio.Future[None] | None = None

    def then(self, reply: Callable[[], Awaitable[None]]) -> None:
        """Run `reply` after every reply owed before it."""
        self.owed.append(reply)
        if self.replying is None or self.replying.done():
            self.replying = asyncio.create_task(self._reply())

    async def _reply(self) -> None:
        while self.owed:
            try:
                await self.owed[0]()
            finally:
                self.owed.popleft()
                if self.freed is not None and not self.freed.done():
                    self.freed.set_result(None)

    async def room(self) -> None:
        """Wait until fewer than READ_AHEAD replies are owed."""
        while len(self.owed) >= READ_AHEAD:
            self.freed = asyncio.get_running_loop().create_future()
            await self.freed

    async def drained(self) -> None:
        """Wait until every reply owed is sent."""
        if self.replying is not None and not self.replying.done():
            await asyncio.wait([self.replying])

    def cancel(self) -> None:
        """The socket closed: nobody reads the replies (what was queued is still stored)."""
        if self.replying is not None:
            self.replying.cancel()
