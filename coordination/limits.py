"""Per-agent budgets: frames per second shared by all of an agent's sockets and HTTP calls.

Every frame costs one token, whether it came alone, in a list or in a bundle; the bucket
holds at most 2 x LTP_RATE_LIMIT (the burst) and refills at LTP_RATE_LIMIT per second.

The buckets live in the daphne process (a dict keyed by agent, guarded by a lock because
sync views run in threads): fast, with nothing to ask per frame. With several daphne processes
behind a balancer an agent could reach up to one budget per process; sockets are sticky, and
a balancer hashing on the Authorization header keeps an agent on one process.
"""

from __future__ import annotations

import math
import threading
import time

from django.conf import settings

# Frames ingested per hop to the database thread, yielding to the event loop between hops.
# The thread serves hops in order, so another agent's frame waits behind at most this many of
# a big list's frames: one frame keeps a neighbour's ack within about twice its quiet time.
CHUNK = 1


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self, wanted: int = 1) -> int:
        """Take up to `wanted` tokens; returns how many were granted (0 .. wanted)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def retry_after(self) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1 - self.tokens) / self.rate))


_buckets: dict[int, TokenBucket] = {}
_lock = threading.Lock()


def _bucket(agent_pk: int) -> TokenBucket:
    rate = float(settings.LTP_RATE_LIMIT)
    bucket = _buckets.get(agent_pk)
    if bucket is None or bucket.rate != rate:
        bucket = _buckets[agent_pk] = TokenBucket(rate, 2 * rate)
    return bucket


def admit(agent_pk: int, frames: int) -> int:
    """How many of `frames` the agent may send now (taken from its budget)."""
    with _lock:
        return _bucket(agent_pk).take(frames)


def exhausted(agent_pk: int) -> bool:
    """Whether the agent's budget has not even one frame left now (nothing taken)."""
    with _lock:
        bucket = _bucket(agent_pk)
        bucket.take(0)  # refills
        return bucket.tokens < 1


def pause(refused: int) -> float:
    """Seconds to wait before reading more from an agent that just had `refused` frames
    refused: its excess, at its own rate (at most 2 s). A flooder is slowed in proportion
    to its excess, and refusing its frames stops costing the server more than its budget."""
    return min(2.0, refused / float(settings.LTP_RATE_LIMIT))


def retry_after(agent_pk: int) -> int:
    with _lock:
        return _bucket(agent_pk).retry_after()
