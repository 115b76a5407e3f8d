"""manage.py verifytrace and the verifier behind it (PROTOCOL §6)."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from coordination.canonical import GENESIS, canonical, chain_hash
from coordination.trace import TraceVerdict, trace_entry_line, verify_trace

pytestmark = pytest.mark.mode_independent

LTP = Path(__file__).parent / "fixtures" / "ltp"
INCIDENT = LTP / "vectors" / "incident-4821.audit.trace.jsonl"
TAMPERED = LTP / "vectors" / "incident-4821.tampered.audit.trace.jsonl"


def run_verifytrace(path) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verifytrace", str(path), stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue().strip()
    return 0, out.getvalue().strip()


def write_trace(tmp_path, entries) -> Path:
    path = tmp_path / "edited.trace.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


def incident_lines() -> list[str]:
    # Split on "\n" only: a frame holds a raw U+2028, which splitlines() breaks on.
    return INCIDENT.read_text(encoding="utf-8").rstrip("\n").split("\n")


def incident_entries():
    return [json.loads(line) for line in incident_lines()]


def test_incident_trace_is_verified():
    assert run_verifytrace(INCIDENT) == (0, "verified (10 entries)")


def test_tampered_trace_breaks_at_entry_7():
    status, output = run_verifytrace(TAMPERED)

    assert status == 1
    assert output.startswith("broken at entry 7: hash mismatch (expected ")


@pytest.mark.parametrize(
    ("name", "entries"),
    [("minimal.audit.trace.jsonl", 3), ("failure-recovery.trace.jsonl", 9)],
)
def test_ltp_reference_traces_are_verified(name, entries):
    assert run_verifytrace(LTP / "traces" / name) == (0, f"verified ({entries} entries)")


def test_bad_integrity_trace_breaks_at_entry_1():
    status, output = run_verifytrace(LTP / "traces" / "bad-integrity.audit.trace.jsonl")

    assert status == 1
    assert output.startswith("broken at entry 1: hash mismatch")


def test_gap_in_i_breaks_the_trace(tmp_path):
    entries = incident_entries()
    del entries[3]
    # Re-chain the rest so only the missing i gives the cut away.
    entries[3]["prev_hash"] = entries[2]["hash"]

    status, output = run_verifytrace(write_trace(tmp_path, entries))

    assert (status, output) == (1, "broken at entry 3: i is 4, expected 3")


def test_chain_not_starting_at_genesis_breaks_at_entry_0(tmp_path):
    # A trace cut at the front: valid hashes, renumbered, but prev_hash is not zeros.
    entries = incident_entries()[2:]
    for i, entry in enumerate(entries):
        entry["i"] = i

    status, output = run_verifytrace(write_trace(tmp_path, entries))

    assert (status, output) == (1, "broken at entry 0: first prev_hash is not 64 zeros")


def test_edited_stored_hash_breaks_at_that_entry(tmp_path):
    entries = incident_entries()
    entries[6]["hash"] = "f" * 64

    status, output = run_verifytrace(write_trace(tmp_path, entries))

    assert status == 1
    assert output.startswith("broken at entry 6: hash mismatch")


def test_reading_stdin_with_dash(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(INCIDENT.read_text(encoding="utf-8")))

    assert run_verifytrace("-") == (0, "verified (10 entries)")


def test_empty_trace_is_not_verified(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")

    assert run_verifytrace(path) == (1, "not verified: empty trace")


def test_verify_trace_reports_prev_hash_mismatch_with_the_previous_entry():
    lines = incident_lines()
    entry = json.loads(lines[7])
    entry["prev_hash"] = "a" * 64
    lines[7] = json.dumps(entry)

    verdict = verify_trace(lines)

    assert verdict == TraceVerdict(
        ok=False, entries=7, broken_at=7, why="prev_hash does not match entry 6's hash"
    )


def test_verify_trace_skips_blank_lines_and_reports_bad_json():
    lines = incident_lines()

    assert verify_trace(["", *lines[:2], "   ", *lines[2:]]).ok
    assert verify_trace([*lines[:2], "{not json"]).broken_at == 2


def test_trace_entry_line_embeds_the_frame_text_verbatim_and_verifies():
    frames = [{"v": "0.1", "id": "a", "n": 18.0}, {"v": "0.1", "id": "b", "k": {"10": 1, "2": 2}}]
    prev, lines = GENESIS, []
    for i, frame in enumerate(frames):
        text = canonical(frame)
        digest = chain_hash(prev, frame)
        lines.append(trace_entry_line(i, 1764000000000 + i, "in", "sess-1", text, prev, digest))
        prev = digest

    assert lines[0] == (
        '{"i":0,"timestamp_ms":1764000000000,"direction":"in","session_id":"sess-1",'
        '"frame":{"id":"a","n":18,"v":"0.1"},'
        f'"prev_hash":"{GENESIS}","hash":"{chain_hash(GENESIS, frames[0])}"}}'
    )
    assert list(json.loads(lines[1])) == [
        "i",
        "timestamp_ms",
        "direction",
        "session_id",
        "frame",
        "prev_hash",
        "hash",
    ]
    assert verify_trace(lines) == TraceVerdict(ok=True, entries=2, broken_at=None, why="verified")
