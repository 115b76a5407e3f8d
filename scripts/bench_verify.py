"""After a benchmark run: is every frame ltpdash acknowledged in a chain that verifies?

    LTPDASH_DATA_DIR=... python scripts/bench_verify.py ACKED.json

ACKED.json maps each sender to {frame id: [seq, hash]} as the acks said. Each acked frame
with a seq (a chain entry; heartbeats have none) must be stored with that seq and hash, and
every coordination holding one must verify from genesis
(`coordination.integrity.verdict_for(..., recheck=True)`, verifytrace's own code).
Prints one line: `chain: ...`; exits 1 when something does not hold.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltpdash.settings")

import django  # noqa: E402

django.setup()

from coordination.integrity import verdict_for  # noqa: E402
from coordination.models import ChainState, Coordination, Frame  # noqa: E402


def _stored(sender: str, ids: list[str]) -> dict[str, tuple]:
    stored = {}
    for start in range(0, len(ids), 500):
        rows = Frame.objects.filter(sender=sender, ltp_id__in=ids[start : start + 500])
        for ltp_id, *rest in rows.values_list("ltp_id", "seq", "hash", "coordination_id"):
            stored[ltp_id] = tuple(rest)
    return stored


def check(acked: dict[str, dict[str, list]]) -> tuple[int, int, list[str]]:
    """(frames checked, chains verified, problems)."""
    problems: list[str] = []
    chains: set[int] = set()
    count = 0
    for sender, frames in acked.items():
        # Heartbeats and the like are acked without a chain entry (no seq): nothing to find.
        frames = {ltp_id: ack for ltp_id, ack in frames.items() if ack[0] is not None}
        stored = _stored(sender, list(frames))
        for ltp_id, (seq, digest) in frames.items():
            count += 1
            found = stored.get(ltp_id)
            if found is None:
                problems.append(f"{sender} {ltp_id}: acked, not stored")
            elif (found[0], found[1]) != (seq, digest):
                problems.append(f"{sender} {ltp_id}: acked seq {seq}, stored {found[0]}")
            elif found[2] is not None:
                chains.add(found[2])
    for coordination in Coordination.objects.filter(pk__in=chains):
        verdict = verdict_for(coordination, recheck=True)
        if verdict.state != ChainState.VERIFIED:
            problems.append(f"{coordination.key}: {verdict.text}")
    return count, len(chains), problems


def main() -> None:
    acked = json.loads(Path(sys.argv[1]).read_text())
    count, chains, problems = check(acked)
    if problems:
        print(f"chain: NOT VERIFIED, {len(problems)} problem(s) in {count} acked frames")
        for problem in problems[:10]:
            print(f"  {problem}")
        raise SystemExit(1)
    print(f"chain: verified, all {count} acked frames stored as acked in {chains} verifying chains")


if __name__ == "__main__":
    main()
