"""Helpers for the review tests: one step's block out of a rendered review page."""

from __future__ import annotations

import re


def step_block(html: str, seq: int) -> str:
    """The HTML of step `seq` in the story (from its <li> to the next step or the list end)."""
    start = html.index(f'<li id="step-{seq}"')
    following = re.compile(r'<li id="step-\d+"|</ol>\s*</section>|</ol>\s*</body>')
    match = following.search(html, start + 1)
    return html[start : match.start() if match else len(html)]


def step_seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li id="step-(\d+)"', html)]


def mark_seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="#step-(\d+)" class="mark', html)]
