"""The swimlane picture of a coordination: server-rendered SVG, no script.

One lane (column) per agent, one for humans, one for ltpdash; time runs down the page. Each
step is a mark in its sender's lane, with an arrow to the lane it addresses (a request to its
target, a response to the requester, an escalation to humans, a decision back to the agent).
Every mark links to its step (``#step-<seq>``) in the page around the picture.

Time is compressed: steps sit one row apart however far apart they happened, and a pause
longer than ``IDLE`` is drawn as a labelled break, so a 200-step incident with a quiet hour
in the middle stays readable.

Pure layout (steps in, numbers out) plus one autoescaping Django template: lane names and
titles are agent-supplied text and are never marked safe. Layer: beside review (uses only its
Step shape, duck-typed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.template.loader import render_to_string

LANE_WIDTH = 140
LEFT = 76  # room for the time labels
TOP = 40  # room for the lane names
ROW = 18
GAP = 26
IDLE = timedelta(seconds=30)
TICK_EVERY = 10

# kind -> (shape, colour). Presentation attributes, not style: the console's CSP forbids
# inline style, and the offline report must look the same without the console's CSS.
MARKS = {
    "request": ("circle", "#2563eb"),
    "response": ("circle", "#059669"),
    "route": ("circle", "#6b7280"),
    "fallback": ("diamond", "#d97706"),
    "escalation": ("diamond", "#dc2626"),
    "decision": ("square", "#7c3aed"),
    "handoff": ("square", "#0891b2"),
    "orientation": ("circle", "#a3a3a3"),
}
DEFAULT_MARK = ("circle", "#9ca3af")


class StepLike(Protocol):
    seq: int
    when: Any
    lane: str
    target: str
    kind: str
    type: str
    headline: str


@dataclass(frozen=True)
class Mark:
    seq: int
    x: int
    y: int
    to_x: int | None
    shape: str
    colour: str
    title: str
    kind: str

    @property
    def points(self) -> str:
        """The diamond's corners (the template draws circles and squares from x, y)."""
        x, y = self.x, self.y
        return f"{x},{y - 7} {x + 7},{y} {x},{y + 7} {x - 7},{y}"

    @property
    def arrow_end(self) -> int | None:
        """Where the arrow stops, short of the target's lane line so the head shows."""
        if self.to_x is None:
            return None
        return self.to_x - 8 if self.to_x > self.x else self.to_x + 8


def _idle(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min idle"
    return f"{minutes} min {secs} s idle" if minutes else f"{secs} s idle"


def layout(lanes: Sequence[str], steps: Sequence[StepLike]) -> dict[str, Any]:
    """Positions for every lane, mark, pause and time label."""
    x_of = {lane: LEFT + LANE_WIDTH * i + LANE_WIDTH // 2 for i, lane in enumerate(lanes)}
    marks, gaps, ticks = [], [], []
    y, previous = TOP + ROW, None
    for index, step in enumerate(steps):
        when = step.when
        paused = previous is not None and when is not None and when - previous > IDLE
        if paused:
            gaps.append({"y": y - 4, "label": _idle((when - previous).total_seconds())})
            y += GAP
        if when is not None and (paused or index % TICK_EVERY == 0):
            ticks.append({"y": y + 4, "label": when.strftime("%H:%M:%S")})
        shape, colour = MARKS.get(step.kind, DEFAULT_MARK)
        x = x_of.get(step.lane, LEFT + LANE_WIDTH // 2)
        target = x_of.get(step.target) if step.target and step.target != step.lane else None
        marks.append(
            Mark(step.seq, x, y, target, shape, colour, f"#{step.seq} {step.headline}", step.kind)
        )
        previous = when if when is not None else previous
        y += ROW
    lane_boxes = [
        {"name": lane, "x": x_of[lane], "left": x_of[lane] - LANE_WIDTH // 2 + 4} for lane in lanes
    ]
    return {
        "lanes": lane_boxes,
        "marks": marks,
        "gaps": gaps,
        "ticks": ticks,
        "width": LEFT + LANE_WIDTH * max(len(lanes), 1) + 10,
        "height": y + ROW + 40,
        "legend": [
            {
                "kind": kind,
                "shape": shape,
                "colour": colour,
                "x": LEFT + 100 * (i % 4),
                "y": y + ROW + 16 * (i // 4),
            }
            for i, (kind, (shape, colour)) in enumerate(MARKS.items())
        ],
    }


def render(lanes: Sequence[str], steps: Sequence[StepLike]) -> str:
    """The picture as SVG markup, to inline in a page or the offline report."""
    return render_to_string("coordination/review/swimlane.svg", layout(lanes, steps))
