"""Bring in a trace recorded elsewhere as a read-only coordination (``manage.py importtrace``,
the admins' upload form).

Two file shapes, told apart by the first line:

- an LTP audit trace (PROTOCOL §6): one entry per line, ``{"i", "frame", "prev_hash", "hash",
  ...}``. Each frame is stored with the prev_hash and hash *stated in the file*, so the chain
  is kept exactly as found: a broken one is imported and shown broken, never repaired.
- raw frames, one per line: stored without hashes; the coordination has no chain.

Frames are stored raw (canonical text) whatever their payload dialect; ``ts`` may be Unix
milliseconds or ISO-8601. The whole file is refused, naming the first offending line, when a
line is not JSON or not a frame (an object with a string ``type``): nothing half-imported.

Layer: just above models (writes Coordination, Frame, TraceImport; uses trace, canonical,
integrity).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from coordination.canonical import GENESIS, CanonicalError, canonical, parse_json
from coordination.integrity import Verdict, from_trace_verdict, verdict_for
from coordination.models import ChainState, Coordination, Frame, TraceImport
from coordination.schemas import parse_iso
from coordination.trace import verify_trace

__all__ = ["ImportRefused", "Imported", "import_trace"]


class ImportRefused(ValueError):
    """The file is refused whole; ``line`` is the 1-based line number at fault."""

    def __init__(self, line: int, why: str):
        super().__init__(f"line {line}: {why}")
        self.line = line
        self.why = why


@dataclass(frozen=True)
class Imported:
    coordination: Coordination
    verdict: Verdict

    @property
    def path(self) -> str:
        return f"/coordinations/{self.coordination.key}/"


@dataclass(frozen=True)
class _Entry:
    frame: dict[str, Any]
    text: str  # the frame's canonical text, exactly what the chain hashes
    prev_hash: str
    hash: str
    timestamp_ms: int | None
    direction: str
    session_id: str


def _object(line_no: int, line: str) -> dict[str, Any]:
    try:
        value = parse_json(line)
    except (ValueError, RecursionError):
        raise ImportRefused(line_no, "not valid JSON") from None
    if not isinstance(value, dict):
        raise ImportRefused(line_no, "not a JSON object")
    return value


def _frame(line_no: int, value: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str) or not value["type"]:
        raise ImportRefused(line_no, "not a frame (an object with a string type)")
    try:
        return value, canonical(value)
    except CanonicalError as exc:
        raise ImportRefused(line_no, f"frame has no canonical form ({exc})") from None


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def parse(lines: Iterable[str]) -> tuple[str, list[_Entry]]:
    """The file's kind and entries, or ImportRefused for the first line at fault."""
    kind = ""
    entries: list[_Entry] = []
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        value = _object(line_no, line)
        is_entry = "frame" in value and "type" not in value
        kind = kind or (TraceImport.Kind.AUDIT_TRACE if is_entry else TraceImport.Kind.RAW_FRAMES)
        if is_entry != (kind == TraceImport.Kind.AUDIT_TRACE):
            raise ImportRefused(line_no, f"not a frame of this {TraceImport.Kind(kind).label}")
        frame, text = _frame(line_no, value["frame"] if is_entry else value)
        stamp = value.get("timestamp_ms")
        entries.append(
            _Entry(
                frame=frame,
                text=text,
                prev_hash=_text(value.get("prev_hash"), 64) if is_entry else "",
                hash=_text(value.get("hash"), 64) if is_entry else "",
                timestamp_ms=stamp if type(stamp) is int else None,
                direction="in" if value.get("direction") in ("in", "inbound") else "out",
                session_id=_text(value.get("session_id"), 64),
            )
        )
    if not entries:
        raise ImportRefused(1, "no frames in the file")
    return kind, entries


def _when(entry: _Entry) -> datetime | None:
    ts = entry.frame.get("ts")
    try:
        if isinstance(ts, str):
            return parse_iso(ts)
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            return datetime.fromtimestamp(ts / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _file_verdict(kind: str, lines: list[str]) -> Verdict:
    """The file's own verdict, by verifytrace's code over the lines exactly as found."""
    if kind == TraceImport.Kind.RAW_FRAMES:
        return Verdict(ChainState.NO_CHAIN)
    return from_trace_verdict(verify_trace(line.lstrip("\ufeff") for line in lines))


def _new_coordination(name: str) -> Coordination:
    stem = name.rsplit("/", 1)[-1].removesuffix(".jsonl").replace(".", "-")
    base = "imported-" + (slugify(stem) or "trace")
    base = base[:180]
    for n in range(1, 1000):
        key = base if n == 1 else f"{base}-{n}"
        if not Coordination.objects.filter(key=key).exists():
            try:
                with transaction.atomic():
                    return Coordination.objects.create(key=key)
            except IntegrityError:
                continue  # someone took the key between the check and the insert
    raise RuntimeError(f"no free coordination key for {base!r}")


def _store(coordination: Coordination, entries: list[_Entry]) -> None:
    now = timezone.now()
    orientations: dict[str, Frame] = {}
    rows = []
    for seq, entry in enumerate(entries):
        sender = _text(entry.frame.get("from"), 210)
        when = _when(entry)
        stamp = entry.timestamp_ms
        received = datetime.fromtimestamp(stamp / 1000, tz=UTC) if stamp is not None else None
        row = Frame(
            coordination=coordination,
            seq=seq,
            prev_hash=entry.prev_hash,
            hash=entry.hash,
            # The LTP id stays in raw; this only has to be unique (sender, id) across ltpdash.
            ltp_id=f"imported:{coordination.pk}:{seq}",
            sender=sender,
            type=entry.frame["type"][:100],
            direction=entry.direction,
            raw=entry.text,
            ts=when,
            received_at=received or when or now,
            session_id=entry.session_id,
            orientation=orientations.get(sender),
        )
        row.save()
        rows.append(row)
        if row.type == "orientation":
            orientations[sender] = row
    last = rows[-1]
    coordination.head_seq = last.seq if last.seq is not None else -1
    coordination.head_hash = last.hash or GENESIS
    coordination.last_activity = last.received_at
    coordination.created_at = rows[0].received_at
    coordination.save(update_fields=["head_seq", "head_hash", "last_activity", "created_at"])


def import_trace(lines: Iterable[str], *, filename: str = "", user: User | None = None) -> Imported:
    """Import the file's lines into a new read-only coordination; ImportRefused if refused."""
    lines = list(lines)
    kind, entries = parse(lines)
    found = _file_verdict(kind, lines)
    with transaction.atomic():
        coordination = _new_coordination(filename or "trace")
        _store(coordination, entries)
        TraceImport.objects.create(
            coordination=coordination,
            filename=filename[-255:],
            kind=kind,
            imported_by=user,
            state=found.state,
            broken_at=found.broken_at,
            why=found.why,
        )
    return Imported(coordination, verdict_for(coordination, recheck=True))
