"""The ids of the frames ltpdash makes (acks, its own chain entries): unique, in one process
and across processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from coordination.schemas import new_id

ROOT = Path(__file__).resolve().parent.parent

ID = re.compile(r"^ltpdash-[0-9a-f]{32}$")


def test_ids_are_unique_and_keep_their_shape():
    ids = [new_id("ltpdash") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(ID.match(i) for i in ids)


def test_another_process_draws_other_ids():
    code = "from coordination.schemas import new_id; print(new_id('ltpdash'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert ID.match(other)
    assert other[:24] != new_id("ltpdash")[:24]  # a random part of its own, not a count


def test_a_forked_child_draws_its_own():
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, new_id("ltpdash").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 100).decode()
    assert ID.match(theirs) and theirs[:24] != new_id("ltpdash")[:24]
