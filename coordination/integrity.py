"""Is this coordination's record untampered? The verdict every coordination page shows.

The verdict is computed by the same code as ``manage.py verifytrace``: the stored chain is
written out as audit-trace lines (``trace_entry_line``, as the export does) and checked by
``verify_trace``. Three answers: ``verified (N entries)``, ``broken at entry N: <why>``,
``no chain`` (nothing was chained: an empty coordination, or raw frames imported without
hashes).

Re-hashing a long chain on every page view would be wasteful, so the verdict is cached
(``ChainCheck``) against the chain head it was computed for. How the cache stays honest:

1. Same head, checked less than ``LTPDASH_INTEGRITY_MAX_AGE`` seconds ago: the cached verdict.
2. The head moved on from a verified head: only the new entries are hashed, continuing from
   the cached head's hash (a new entry whose prev_hash does not match is caught).
3. Anything else (a broken verdict, a head that went backwards or changed hash, or a whole
   check older than the max age): the whole chain is re-hashed.
4. "Re-verify" on the page (``verdict_for(..., recheck=True)``) re-hashes the whole chain now.

An entry altered in place in the database moves no head, so cases 1-2 cannot see it; cases
3-4 do, within the max age at the latest. An imported coordination also keeps the verdict its
file had at import: if the file was broken, it stays broken (never repaired).

Layer: just above models (reads Coordination, Frame and the audit models; uses trace).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from coordination.canonical import GENESIS
from coordination.models import ChainCheck, ChainState, Coordination, Frame, TraceImport
from coordination.trace import TraceVerdict, trace_entry_line, verify_trace

__all__ = ["Verdict", "from_trace_verdict", "page_context", "verdict_for"]


@dataclass(frozen=True)
class Verdict:
    state: str  # a ChainState value
    entries: int = 0
    broken_at: int | None = None
    why: str = ""

    @property
    def text(self) -> str:
        if self.state == ChainState.VERIFIED:
            return f"verified ({self.entries} entr{'y' if self.entries == 1 else 'ies'})"
        if self.state == ChainState.BROKEN:
            return f"broken at entry {self.broken_at}: {self.why}"
        return "no chain"

    @property
    def css(self) -> str:
        return {"verified": "ok", "broken": "broken"}.get(self.state, "none")


def from_trace_verdict(verdict: TraceVerdict) -> Verdict:
    if verdict.ok:
        return Verdict(ChainState.VERIFIED, verdict.entries)
    if verdict.broken_at is None:  # an empty trace
        return Verdict(ChainState.NO_CHAIN)
    return Verdict(ChainState.BROKEN, verdict.entries, verdict.broken_at, verdict.why)


def _lines(coordination: Coordination, after: int) -> Iterator[str]:
    """The stored chain up to its head, from entry ``after + 1``, as audit-trace lines."""
    rows = (
        Frame.objects.filter(
            coordination=coordination, seq__gt=after, seq__lte=coordination.head_seq
        )
        .order_by("seq")
        .values_list("seq", "received_at", "direction", "session_id", "raw", "prev_hash", "hash")
        .iterator(chunk_size=2000)
    )
    for seq, received_at, direction, session_id, raw, prev_hash, digest in rows:
        assert seq is not None  # filtered on it
        ms = int(received_at.timestamp() * 1000)
        yield trace_entry_line(seq, ms, direction, session_id, raw, prev_hash, digest)


def _compute(coordination: Coordination, cached: ChainCheck | None, full: bool) -> Verdict:
    if not Frame.objects.filter(coordination=coordination).exclude(hash="").exists():
        return Verdict(ChainState.NO_CHAIN)
    if not full and cached is not None:
        verdict = verify_trace(
            _lines(coordination, cached.head_seq),
            start=cached.head_seq + 1,
            prev_hash=cached.head_hash,
        )
    else:
        verdict = verify_trace(_lines(coordination, -1))
    return from_trace_verdict(verdict)


def _as_found(coordination: Coordination, verdict: Verdict) -> Verdict:
    """An imported chain that was broken in its file stays broken, whatever else is true."""
    if verdict.state == ChainState.BROKEN:
        return verdict
    found = TraceImport.objects.filter(coordination=coordination).first()
    if found is not None and found.state == ChainState.BROKEN:
        return Verdict(ChainState.BROKEN, found.broken_at or 0, found.broken_at, found.why)
    return verdict


def _incremental(cached: ChainCheck, coordination: Coordination, now: datetime) -> bool:
    """Whether hashing only the entries after the cached head is enough (case 2)."""
    max_age = timedelta(seconds=settings.INTEGRITY_MAX_AGE)
    return (
        cached.state == ChainState.VERIFIED
        and cached.head_seq < coordination.head_seq
        and now - cached.full_check_at < max_age
    )


def verdict_for(coordination: Coordination, *, recheck: bool = False) -> Verdict:
    """The integrity verdict of ``coordination``'s chain, cached against its head."""
    now = timezone.now()
    cached = ChainCheck.objects.filter(coordination=coordination).first()
    incremental = False
    if cached is not None and not recheck:
        fresh = now - cached.full_check_at < timedelta(seconds=settings.INTEGRITY_MAX_AGE)
        same_head = (cached.head_seq, cached.head_hash) == (
            coordination.head_seq,
            coordination.head_hash,
        )
        if fresh and same_head:
            return Verdict(cached.state, cached.entries, cached.broken_at, cached.why)
        incremental = _incremental(cached, coordination, now)
    verdict = _as_found(coordination, _compute(coordination, cached, full=not incremental))
    full_check_at = cached.full_check_at if incremental and cached is not None else now
    _store(coordination, verdict, now, full_check_at=full_check_at)
    return verdict


def page_context(coordination: Coordination) -> dict:
    """What every coordination page shows about its record: the verdict, and where an
    imported chain came from (None for a coordination that lives here)."""
    return {
        "verdict": verdict_for(coordination),
        "trace_import": TraceImport.objects.filter(coordination=coordination).first(),
    }


def _store(
    coordination: Coordination, verdict: Verdict, now: datetime, full_check_at: datetime | None
) -> None:
    values = {
        "head_seq": coordination.head_seq,
        "head_hash": coordination.head_hash if coordination.head_seq >= 0 else GENESIS,
        "state": verdict.state,
        "entries": verdict.entries,
        "broken_at": verdict.broken_at,
        "why": verdict.why,
        "checked_at": now,
        "full_check_at": full_check_at,
    }
    try:
        # A cache: two page views computing at once both write a correct verdict for the head
        # they saw; if they race on creating the row, the loser's write is simply dropped.
        with transaction.atomic():
            ChainCheck.objects.update_or_create(coordination=coordination, defaults=values)
    except IntegrityError:
        pass
