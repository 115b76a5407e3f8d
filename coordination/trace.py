"""Audit traces: verifying a hash chain and writing its lines (PROTOCOL §6)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from coordination.canonical import (
    GENESIS,
    CanonicalError,
    canonical,
    chain_hash,
    parse_json,
)

__all__ = ["TraceVerdict", "trace_entry_line", "trace_response", "verify_trace"]


@dataclass(frozen=True)
class TraceVerdict:
    ok: bool
    entries: int
    broken_at: int | None
    why: str


def _short(digest: object) -> str:
    text = str(digest)
    return text[:12] + "…" if len(text) > 12 else text


def verify_trace(lines: Iterable[str], *, start: int = 0, prev_hash: str = GENESIS) -> TraceVerdict:
    """Check an audit trace (JSON Lines) entry by entry; stop at the first break.

    Besides the hash chain this checks what the chain cannot protect: that
    ``i`` counts from 0 without gaps and that the chain starts at genesis, so
    a trace cut at the front or with entries removed is not reported intact.

    ``start`` and ``prev_hash`` continue a check already done up to entry
    ``start - 1`` whose hash was ``prev_hash`` (the integrity cache hashes only
    the entries appended since).
    """
    position = start

    def broken(why: str) -> TraceVerdict:
        return TraceVerdict(ok=False, entries=position, broken_at=position, why=why)

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            entry = parse_json(line)
        except (ValueError, RecursionError):
            return broken("not valid JSON")
        if type(entry) is not dict:
            return broken("entry is not a JSON object")

        i = entry.get("i")
        if type(i) is not int or i != position:
            return broken(f"i is {_describe(i)}, expected {position}")

        stated_prev = entry.get("prev_hash")
        if stated_prev != prev_hash:
            if position == 0:
                return broken("first prev_hash is not 64 zeros")
            return broken(f"prev_hash does not match entry {position - 1}'s hash")

        if "frame" not in entry:
            return broken("frame is missing")
        try:
            expected = chain_hash(prev_hash, entry["frame"])
        except CanonicalError as exc:
            return broken(f"frame has no canonical form ({exc})")
        stated = entry.get("hash")
        if stated != expected:
            return broken(f"hash mismatch (expected {_short(expected)}, got {_short(stated)})")

        prev_hash = expected
        position += 1

    if position == 0:
        return TraceVerdict(ok=False, entries=0, broken_at=None, why="empty trace")
    return TraceVerdict(ok=True, entries=position, broken_at=None, why="verified")


def _describe(value: object) -> str:
    """Show a JSON value in a message; never fail while reporting a failure."""
    if value is None:
        return "missing"
    try:
        return canonical(value)
    except CanonicalError:
        return repr(value)


def trace_entry_line(
    i: int,
    timestamp_ms: int,
    direction: str,
    session_id: str,
    canonical_frame_text: str,
    prev_hash: str,
    hash: str,
) -> str:
    """One audit-trace line (no newline) with the frame text embedded verbatim.

    The frame is the stored canonical text, not re-serialised, so the line
    hashes exactly as it was chained.
    """
    return (
        f'{{"i":{canonical(i)},"timestamp_ms":{canonical(timestamp_ms)},'
        f'"direction":{canonical(direction)},"session_id":{canonical(session_id)},'
        f'"frame":{canonical_frame_text},'
        f'"prev_hash":{canonical(prev_hash)},"hash":{canonical(hash)}}}'
    )


# Characters a header cannot carry (newlines, NUL, other controls) or that would split a path.
_UNSAFE_IN_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def trace_response(coordination_key: str, lines: Iterator[str]) -> StreamingHttpResponse:
    """A coordination's audit trace as a JSON Lines download, streamed.

    The file is named after the coordination's id, which an agent chose: control characters
    and slashes become `_`, and non-ASCII names travel as RFC 6266 `filename*`."""
    response = StreamingHttpResponse(
        (line + "\n" for line in lines), content_type="application/jsonl; charset=utf-8"
    )
    filename = _UNSAFE_IN_FILENAME.sub("_", coordination_key) + ".audit.trace.jsonl"
    response["Content-Disposition"] = content_disposition_header(True, filename) or ""
    return response
