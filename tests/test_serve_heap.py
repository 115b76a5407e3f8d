"""The server freezes what it loaded before serving (coordination.serve.settle_heap): the
collector's full passes no longer walk Django's, Twisted's and the app's own objects. The
pauses this saves are measured by scripts/bench.sh (light load, viewer p99), not here."""

from __future__ import annotations

import gc

import pytest
from django.template.loader import get_template

from coordination import serve


@pytest.mark.mode_independent
def test_the_application_and_the_live_pages_templates_are_loaded_then_frozen():
    gc.unfreeze()
    try:
        frozen = serve.settle_heap()
        assert frozen == gc.get_freeze_count() > 10_000
        # Each of the live pages' templates is one there is (loading it raises otherwise).
        assert all(get_template(name) for name in serve.LIVE_TEMPLATES)
    finally:
        gc.unfreeze()
