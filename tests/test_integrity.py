"""The integrity verdict on every coordination page: computed by verifytrace's code, cached
against the chain head, and honest about a stored frame altered afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coordination import integrity
from coordination.models import ChainCheck, Coordination, Frame
from tests.factories import coordination, seed, send
from tests.seed import KEY

pytestmark = pytest.mark.django_db


def shown(user, path: str) -> str:
    client = Client()
    client.force_login(user)
    body = client.get(path).content.decode()
    start = body.index('<strong class="verdict">') + len('<strong class="verdict">')
    return body[start : body.index("</strong>", start)].replace("&#x27;", "'")


def pages(key: str) -> list[str]:
    return [f"/coordinations/{key}/", f"/coordinations/{key}/review/"]


def test_a_native_chain_shows_verified_with_its_entries(agents, operators):
    seed(agents)
    n = coordination().frames.count()
    for path in pages(KEY):
        assert shown(operators["vic"], path) == f"verified ({n} entries)"


def test_an_empty_coordination_shows_no_chain(operators):
    Coordination.objects.create(key="empty")
    assert shown(operators["vic"], "/coordinations/empty/") == "no chain"


def test_a_stored_frame_altered_afterwards_shows_broken_at_that_entry(agents, operators):
    seed(agents)
    for path in pages(KEY):
        assert shown(operators["vic"], path).startswith("verified")
    tampered = Frame.objects.get(coordination__key=KEY, seq=1)
    raw = tampered.raw.replace("queue depth and error rate", "queue depth only")
    assert raw != tampered.raw
    Frame.objects.filter(pk=tampered.pk).update(raw=raw)  # behind ltpdash's back

    # Within the max age the cached verdict stands (altering a row moves no chain head) ...
    assert shown(operators["vic"], f"/coordinations/{KEY}/").startswith("verified")
    # ... and it is at most LTPDASH_INTEGRITY_MAX_AGE old: once it is, the page
    # re-hashes the whole chain and names the altered entry.
    ChainCheck.objects.update(
        full_check_at=ChainCheck.objects.get().full_check_at - timedelta(seconds=301)
    )
    for path in pages(KEY):
        assert shown(operators["vic"], path).startswith("broken at entry 1: hash mismatch")


def test_reverify_names_the_altered_entry_at_once(agents, operators):
    seed(agents)
    assert shown(operators["vic"], f"/coordinations/{KEY}/").startswith("verified")
    frame = Frame.objects.get(coordination__key=KEY, seq=2)
    raw = frame.raw.replace("guardrail: cannot page DB", "nothing to see")
    assert raw != frame.raw
    Frame.objects.filter(pk=frame.pk).update(raw=raw)
    client = Client()
    client.force_login(operators["vic"])
    response = client.post(reverse("coordination-reverify", args=[KEY]), follow=True)
    body = response.content.decode()
    assert "Integrity re-verified: broken at entry 2: hash mismatch" in body
    assert shown(operators["vic"], f"/coordinations/{KEY}/").startswith("broken at entry 2")


def test_an_unchanged_head_is_not_rehashed_on_the_next_view(agents):
    seed(agents)
    first = integrity.verdict_for(coordination())
    with CaptureQueriesContext(connection) as queries:
        again = integrity.verdict_for(coordination())
    assert again == first
    assert not any("coordination_frame" in q["sql"] for q in queries.captured_queries)


def test_a_moved_head_hashes_only_the_new_entries(agents):
    seed(agents)
    before = integrity.verdict_for(coordination())
    send(agents.triage, {"id": "more", "coordination_id": KEY, "orientation": {"role": "t"}})
    with CaptureQueriesContext(connection) as queries:
        after = integrity.verdict_for(coordination())
    assert after.entries == before.entries + 1 and after.state == "verified"
    frame_reads = [q["sql"] for q in queries.captured_queries if '"raw"' in q["sql"]]
    assert len(frame_reads) == 1 and f'"seq" > {before.entries - 1}' in frame_reads[0]


def test_verdict_matches_verifytrace_on_the_export(agents):
    import io

    from django.core.management import call_command

    from coordination.trace import verify_trace

    seed(agents)
    Frame.objects.filter(coordination__key=KEY, seq=3).update(hash="0" * 64)
    out = io.StringIO()
    call_command("exporttrace", KEY, stdout=out)
    offline = verify_trace(out.getvalue().splitlines())
    verdict = integrity.verdict_for(coordination(), recheck=True)
    assert (
        (verdict.broken_at, verdict.why)
        == (offline.broken_at, offline.why)
        == (
            3,
            verdict.why,
        )
    )
