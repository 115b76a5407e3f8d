"""What one batch of frames (group commit) keeps from frame to frame: the rows it has locked,
and the writes it owes them until the batch ends.

In a batch's transaction a row that one frame locked (its agent, its coordination) stays
locked until the COMMIT, so the next frame of the same agent or coordination takes it from
here instead of reading it again; the writes every orientation frame makes to those rows
(the chain's head, the agent's last ts, the orientation in force) are made once, for the last
frame, when the batch ends; and the frames themselves are inserted together then, with primary
keys given as they are appended (so what refers to them can be written before them):

    1. lock     `agent(pk)` / `coordination(key, agent)`: read with the lock the first time,
                then the batch's own copy (what the batch wrote is in it, in memory)
    2. owe      the frame path notes the rows it changed (`owe_*`, `insert`) instead of
                writing them (and instead of hinting the pages of each chain it appends to)
    3. settle   before a frame whose effects read those rows from the database (anything but
                an orientation or an unknown type in a coordination), and before the COMMIT:
                the frames go out in one statement, the other owed writes one per row, each
                chain that moved is hinted once (coordination.events), and the batch forgets
                its copies (the next frame locks again, and reads what that
                frame's effects wrote)

What else writes those rows in the batch's transaction (a silent agent's presence change
appends a frame to its coordination) collides with what is owed on the chain's unique
(coordination, seq) or the frame's primary key at the latest when the batch settles, and the
batch is stored again frame by frame. Nothing here outlives the transaction: a batch that is
rolled back (ingest's redo) takes its copies and owed writes with it, and a single frame never
uses this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from coordination import events
from coordination.models import Agent, Coordination, Frame, Orientation, prepared
from coordination.statements import (
    Seen,
    locked_agent,
    locked_agents,
    locked_coordination,
    locked_coordinations,
)

# The agent's fields a frame may change (ingest compares them with what the lock read).
AGENT_FIELDS = ("last_ts_ms", "current_coordination", "role", "capabilities")


def agent_values(agent: Agent) -> tuple[Any, ...]:
    return (agent.last_ts_ms, agent.current_coordination_id, agent.role, agent.capabilities)


class Stale(Exception):
    """An owed write found its row gone: the batch is rolled back and runs frame by frame."""


@dataclass
class Batch:
    agents: dict[int, tuple[Agent, tuple[Any, ...]]] = field(default_factory=dict)
    coordinations: dict[str, Coordination] = field(default_factory=dict)
    seen: dict[tuple[int, int], Seen] = field(default_factory=dict)
    heads: dict[int, Coordination] = field(default_factory=dict)
    orientations: dict[int, dict[str, Any]] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    keys: Iterator[int] | None = None

    def lock(self, agents: list[int], keys: list[str]) -> None:
        """Lock the batch's agents, then the coordinations its frames name, each in one
        statement and in primary-key order (batches running side by side take them in the
        same order); a frame whose coordination is not among them locks it itself."""
        agents = sorted(set(agents))
        for locked in locked_agents(agents):
            self.agents[locked.pk] = (locked, agent_values(locked))
        found, seen = locked_coordinations(sorted(set(keys)), agents)
        self.coordinations.update((c.key, c) for c in found)
        self.seen.update(seen)

    def agent(self, pk: int) -> Agent:
        """The agent's row, locked (FOR NO KEY UPDATE) by the first frame that asks."""
        held = self.agents.get(pk)
        if held is None:
            locked = locked_agent(pk)
            held = self.agents[pk] = (locked, agent_values(locked))
        return held[0]

    def coordination(self, key: str, agent: Agent) -> Coordination:
        """The coordination named `key`, locked by the first frame that asks; `seen()` on it
        gives what the lock read about `agent` (read again for each agent new to it)."""
        held = self.coordinations.get(key)
        known = self.seen.get((held.pk, agent.pk)) if held is not None else None
        if held is not None and known is not None:
            held.__dict__["_seen"] = known
            return held
        locked = locked_coordination(key, agent)
        self.seen[(locked.pk, agent.pk)] = locked.__dict__["_seen"]
        if held is None:
            held = self.coordinations[key] = locked
        # A copy held already has this batch's appends in memory: keep it, with this
        # agent's reading.
        held.__dict__["_seen"] = locked.__dict__["_seen"]
        return held

    def owe_head(self, coordination: Coordination) -> None:
        self.heads[coordination.pk] = coordination

    def owe_orientation(self, orientation_pk: int, values: dict[str, Any]) -> None:
        """The orientation row's new values."""
        self.orientations[orientation_pk] = values

    def insert(self, frame: Frame) -> None:
        """Owe `frame`'s INSERT; its primary key is given now, so rows written before the
        INSERT may name it (the foreign keys are checked at COMMIT)."""
        if self.keys is None:
            self.keys = prepared.keys(Frame)
        frame.pk = next(self.keys)
        self.frames.append(frame)

    def settle(self) -> None:
        """Write what is owed, one statement per table (executemany: one round trip each on
        PostgreSQL), and forget the copies."""
        prepared.insert_many(self.frames)
        prepared.update_rows(
            Coordination,
            [
                (
                    c.pk,
                    {
                        "head_seq": c.head_seq,
                        "head_hash": c.head_hash,
                        "last_activity": c.last_activity,
                    },
                )
                for c in self.heads.values()
            ],
        )
        orientations = list(self.orientations.items())
        if prepared.update_rows(Orientation, orientations) != len(orientations):
            raise Stale("an orientation row is gone")
        for pk in self.heads:  # a hint per chain that moved, not per frame
            events.coordination_changed(pk)
        prepared.update_rows(
            Agent,
            [
                (agent.pk, dict(zip(AGENT_FIELDS, agent_values(agent), strict=True)))
                for agent, loaded in self.agents.values()
                if agent_values(agent) != loaded
            ],
        )
        self.agents.clear()
        self.coordinations.clear()
        self.seen.clear()
        self.heads.clear()
        self.orientations.clear()
        self.frames.clear()
        self.keys = None  # SQLite's are valid only until something else inserts
