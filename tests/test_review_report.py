"""The downloadable review report: one self-contained HTML file (inline CSS and SVG, no
script, nothing fetched) with the picture and every step."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from coordination.decisions import APPROVE, decide
from tests.factories import coordination, seed
from tests.review_helpers import mark_seqs, step_seqs
from tests.seed import KEY

pytestmark = pytest.mark.django_db


class Resources(HTMLParser):
    """Every URL the document would load or link to, and every tag it uses."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action") and v]


def report(user) -> tuple[str, object]:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("coordination-review-report", args=[KEY]))
    assert response.status_code == 200
    return response.content.decode(), response


def test_report_is_one_file_with_the_picture_and_every_step(agents, operators):
    escalation = seed(agents)
    decide(escalation.pk, operators["alice"], APPROVE, "page the DB on-call")
    html, response = report(operators["vic"])

    assert response["Content-Disposition"] == f'attachment; filename="review-{KEY}.html"'
    assert response["Content-Type"].startswith("text/html")
    count = coordination().frames.count()
    assert step_seqs(html) == list(range(count))
    assert mark_seqs(html) == list(range(count))
    assert "<svg" in html and "guardrail: cannot page DB" in html
    assert "Note: page the DB on-call" in html
    assert re.search(r'Integrity: <strong class="verdict">verified \(\d+ entries\)</strong>', html)

    parsed = Resources()
    parsed.feed(html)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert "style" in parsed.tags  # inline CSS
    # Only links within the document itself: nothing to fetch offline.
    assert parsed.urls and all(url.startswith("#") for url in parsed.urls), parsed.urls
