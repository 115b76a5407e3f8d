"""The ids of the frames ltpdash makes (acks, its own chain entries): unique, in one process
and across processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from coordination.schemas import new_id

ROOT = Path(__file__).resolve().parent.parent

ID = re.compile(r"^ltpdash-[0-9a-f]{32}$")


def test_ids_are_unique_and_keep_their_shape():
    ids = [new_id("ltpdash") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(ID.match(i) for i in ids)


def test_ids_do_not_count_what_the_process_answered():
    # An agent sees the ids of its acks: they must not tell it how busy the process is.
    ids = [int(new_id("ltpdash").split("-", 1)[1], 16) for _ in range(1_000)]
    steps = {later - earlier for earlier, later in pairwise(ids)}
    assert len(steps) == len(ids) - 1  # no common step between neighbours
    assert sum(later > earlier for earlier, later in pairwise(ids)) < 600


def test_two_processes_make_different_ids():
    code = "from coordination.schemas import new_id; print(new_id('ltpdash'))"
    firsts = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
        for _ in range(2)
    ]
    assert all(ID.match(first) for first in firsts)
    assert firsts[0] != firsts[1]  # each process its own key: not the same first id


def test_a_forked_child_draws_its_own():
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, new_id("ltpdash").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 100).decode()
    assert ID.match(theirs) and theirs not in {new_id("ltpdash") for _ in range(5)}
