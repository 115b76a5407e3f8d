"""`manage.py importtrace` and the admins' upload form: LTP audit traces and raw frames into
read-only coordinations, verdicts kept as found, bad files refused whole."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from coordination.models import Coordination, Frame, TraceImport
from tests.factories import send

pytestmark = pytest.mark.django_db

TRACES = {
    "failure-recovery.trace.jsonl": ("verified (9 entries)", "verified"),
    "minimal.audit.trace.jsonl": ("verified (3 entries)", "verified"),
    "bad-integrity.audit.trace.jsonl": ("broken at entry 1: hash mismatch", "broken"),
    "canonical-linear.jsonl": ("no chain", "no_chain"),
}


def importtrace(path) -> list[str]:
    out = io.StringIO()
    call_command("importtrace", str(path), stdout=out)
    return out.getvalue().splitlines()


def watched(user, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("name", list(TRACES))
def test_importtrace_prints_the_verdict_and_the_path_and_the_pages_agree(
    name, ltp_fixtures, operators
):
    verdict, state = TRACES[name]
    printed, path = importtrace(ltp_fixtures / "traces" / name)
    assert printed.startswith(verdict)
    coordination = Coordination.objects.get(trace_import__isnull=False)
    assert path == f"/coordinations/{coordination.key}/"
    assert coordination.trace_import.state == state

    for url in (path, f"{path}review/"):
        body = watched(operators["vic"], url)
        assert f'<strong class="verdict">{printed}</strong>' in body.replace("&#x27;", "'")
        assert '<span class="badge imported">imported</span>' in body
    assert '<span class="badge imported">imported</span>' in watched(
        operators["vic"], reverse("coordination-list")
    )


def test_broken_chain_is_imported_as_found_not_repaired(ltp_fixtures):
    importtrace(ltp_fixtures / "traces" / "bad-integrity.audit.trace.jsonl")
    frames = list(Frame.objects.order_by("seq"))
    assert [f.hash[:8] for f in frames] == ["aa0924d0", "deadbeef", "c7014cdc"]
    assert frames[2].prev_hash.startswith("a1426391")
    out = io.StringIO()
    call_command("exporttrace", frames[0].coordination.key, stdout=out)
    assert '"hash":"deadbeefb80bdd02' in out.getvalue()


def test_iso_and_numeric_ts_are_both_read(ltp_fixtures):
    importtrace(ltp_fixtures / "traces" / "failure-recovery.trace.jsonl")
    first = Frame.objects.get(seq=0)
    assert first.ts.isoformat() == "2024-03-15T14:00:00+00:00"
    importtrace(ltp_fixtures / "traces" / "canonical-linear.jsonl")
    assert (
        Frame.objects.get(coordination__key="imported-canonical-linear", seq=2).ts.timestamp()
        == 0.003
    )


def test_a_file_with_one_bad_line_is_refused_whole_naming_the_line(ltp_fixtures, tmp_path):
    lines = (ltp_fixtures / "traces" / "minimal.audit.trace.jsonl").read_text().splitlines()
    for bad, why in (("{not json", "not valid JSON"), ('{"i": 1, "frame": [1]}', "not a frame")):
        path = tmp_path / "bad.jsonl"
        path.write_text("\n".join([lines[0], lines[1], bad, lines[2]]) + "\n")
        with pytest.raises(CommandError, match=f"line 3: {why}"):
            importtrace(path)
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"v":"0.1","type":"hello","id":"a"}\n{"v":"0.1","id":"b"}\n')
    with pytest.raises(CommandError, match="line 2: not a frame"):
        importtrace(raw)
    assert not Coordination.objects.exists() and not Frame.objects.exists()


def test_importtrace_exits_non_zero_on_refusal(ltp_fixtures, tmp_path):
    import subprocess
    import sys

    from tests.factories import ROOT, database_env

    path = tmp_path / "bad.jsonl"
    path.write_text('{"v":"0.1","type":"hello","id":"a"}\nnope\n')
    run = subprocess.run(
        [sys.executable, "manage.py", "importtrace", str(path)],
        cwd=ROOT,
        env={**__import__("os").environ, **database_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "line 2: not valid JSON" in run.stderr


def test_agents_cannot_append_to_an_imported_coordination(ltp_fixtures, agents):
    importtrace(ltp_fixtures / "traces" / "minimal.audit.trace.jsonl")
    key = Coordination.objects.get().key
    from coordination.ingest import ingest

    outcomes = ingest(
        agents.triage,
        {"id": "x", "coordination_id": key, "orientation": {"role": "intruder"}},
    )
    assert outcomes[0].error.code == "read_only"
    coordination = Coordination.objects.get()
    assert coordination.head_seq == 2 and coordination.frames.count() == 3
    # ... while the agent's own coordinations still take its frames.
    send(agents.triage, {"id": "y", "coordination_id": "elsewhere", "orientation": {"role": "t"}})


def test_operators_cannot_take_over_or_hand_off_an_imported_coordination(ltp_fixtures, operators):
    importtrace(ltp_fixtures / "traces" / "minimal.audit.trace.jsonl")
    key = Coordination.objects.get().key
    client = Client()
    client.force_login(operators["ada"])
    body = client.get(reverse("coordination-detail", args=[key])).content.decode()
    assert "Take over" not in body and "Hand off to" not in body
    client.post(reverse("coordination-take-over", args=[key]))
    client.post(reverse("coordination-hand-off", args=[key]), {"to": "bob"})
    coordination = Coordination.objects.get()
    assert coordination.owner is None and coordination.frames.count() == 3


def test_admin_uploads_a_trace_through_the_form(ltp_fixtures, operators):
    client = Client()
    client.force_login(operators["ada"])
    data = (ltp_fixtures / "traces" / "bad-integrity.audit.trace.jsonl").read_bytes()
    response = client.post(
        reverse("trace-import"),
        {"file": SimpleUploadedFile("bad-integrity.audit.trace.jsonl", data)},
        follow=True,
    )
    body = response.content.decode()
    imported = TraceImport.objects.get()
    assert imported.imported_by == operators["ada"]
    assert response.redirect_chain[-1][0] == f"/coordinations/{imported.coordination.key}/"
    assert "broken at entry 1: hash mismatch" in body


def test_upload_of_a_bad_file_is_refused_with_its_line(operators):
    client = Client()
    client.force_login(operators["ada"])
    bad = SimpleUploadedFile("x.jsonl", b'{"v":"0.1","type":"hello"}\n\n[1,2]\n')
    response = client.post(reverse("trace-import"), {"file": bad})
    assert response.status_code == 200
    assert "Refused, nothing imported: line 3: not a JSON object" in response.content.decode()
    assert not Coordination.objects.exists()


@pytest.mark.parametrize("user", ["vic", "alice", "oscar"])
def test_only_admins_may_import(ltp_fixtures, operators, user):
    client = Client()
    client.force_login(operators[user])
    data = (ltp_fixtures / "traces" / "minimal.audit.trace.jsonl").read_bytes()
    assert client.get(reverse("trace-import")).status_code == 403
    response = client.post(reverse("trace-import"), {"file": SimpleUploadedFile("m.jsonl", data)})
    assert response.status_code == 403
    assert not Coordination.objects.exists()


def test_review_of_imported_traces_reads_both_payload_dialects(ltp_fixtures, operators):
    import html

    importtrace(ltp_fixtures / "traces" / "minimal.audit.trace.jsonl")
    importtrace(ltp_fixtures / "traces" / "failure-recovery.trace.jsonl")
    minimal = html.unescape(
        watched(operators["vic"], "/coordinations/imported-minimal-audit-trace/review/")
    )
    # branches as an object keyed by branch name
    assert "Branch: A (confidence 0.62, status admissible)" in minimal
    assert 'Notes: ["retry updated drift"]' in minimal
    recovery = html.unescape(
        watched(operators["vic"], "/coordinations/imported-failure-recovery-trace/review/")
    )
    # branches as a list of {id, confidence}; ISO ts shown as times
    assert "Branch: defer (confidence 1)" in recovery
    assert "Reason: system_state_failed" in recovery
    assert "2024-03-15 14:00:06" in recovery
