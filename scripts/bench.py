"""Benchmark the frame path against a real daphne process.

    ./scripts/bench.sh                     # embedded default: SQLite WAL + in-memory layer
    ./scripts/bench.sh --scale-out         # PostgreSQL + Redis (DATABASE_URL / REDIS_URL)
    ./scripts/bench.sh --frames 2000 --agents 8
    ./scripts/bench.sh --flood             # issue 9's flood case at a limit of 100 frames/s

Prints figures, not verdicts. Machines are noisy, so the ratios matter more than the
absolute numbers: stored frames (a chain entry and its effects) vs heartbeats (one presence
UPDATE, no chain entry) on the same server shows what the chain and its effects cost;
pipelined vs one-at-a-time shows what batching the client buys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ltpdash_client import LtpClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from coordination.processes import daphne_command, free_port, wait_until_serving  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def start_daphne(env: dict, workdir: Path) -> tuple[subprocess.Popen, int]:
    """A quiet daphne (no access log) on a free port, its errors in workdir/daphne.log."""
    port = free_port()
    server = subprocess.Popen(
        daphne_command("127.0.0.1", port, access_log=False),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "daphne.log").open("w"),
    )
    return server, port


def frame(agent: str, n: int, kind: str = "orientation", coordination: str = "bench") -> dict:
    payload = {"intent": f"step {n}", "guardrails": ["no production writes"]}
    if kind == "heartbeat":
        payload = {"seq": n, "status": "ok"}
    return {
        "v": "0.1",
        "id": f"{agent}-{kind}-{n}-{time.monotonic_ns()}",
        "ts": int(time.time() * 1000),
        "type": kind,
        "from": agent,
        "coordination_id": coordination,
        "payload": payload,
    }


def client(url: str, token: str, agent: str) -> LtpClient:
    """The same client agents use (ltpdash_client): acks matched by frame id."""
    return LtpClient(url, token, agent, reconnect=False)


async def sequential(url: str, token: str, agent: str, count: int, kind: str) -> list[float]:
    """One frame at a time, each waiting for its ack: per-frame latency in ms."""
    latencies = []
    async with client(url, token, agent) as ws:
        for n in range(count):
            started = time.perf_counter()
            [reply] = await ws.send(frame(agent, n, kind))
            assert reply["type"] == "ack", reply
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def pipelined(url: str, token: str, agent: str, count: int, kind: str, window: int) -> int:
    """Up to `window` frames in flight; returns the number acked."""
    in_flight = asyncio.Semaphore(window)
    async with client(url, token, agent) as ws:

        async def one(n: int) -> int:
            try:
                [reply] = await ws.send(frame(agent, n, kind, coordination=f"bench-{agent}"))
            finally:
                in_flight.release()
            if reply["type"] != "ack":
                raise RuntimeError(reply)
            return 1

        tasks = []
        for n in range(count):
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(n)))
        return sum(await asyncio.gather(*tasks))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def run(url: str, tokens: dict[str, str], frames: int, window: int) -> dict:
    names = list(tokens)
    lone = names[0]
    results: dict = {}
    # Warm up connections, imports and caches so the first measurement is not start-up.
    await sequential(url, tokens[lone], lone, 50, "orientation")

    for kind in ("heartbeat", "orientation"):
        lat = await sequential(url, tokens[lone], lone, frames // 4, kind)
        results[f"lone_{kind}"] = {
            "frames_per_s": len(lat) / (sum(lat) / 1000),
            "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 0.99),
        }
    for kind in ("heartbeat", "orientation"):
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(pipelined(url, tokens[n], n, frames // len(names), kind, window) for n in names)
        )
        elapsed = time.perf_counter() - started
        results[f"many_{kind}"] = {"frames_per_s": sum(counts) / elapsed, "agents": len(names)}
    return results


def scratch(scale_out: bool, rate_limit: int) -> tuple[Path, dict]:
    """A scratch directory and the environment of a fresh database for a run."""
    workdir = Path(tempfile.mkdtemp(prefix="ltpdash-bench-"))
    env = {**os.environ, "LTPDASH_DATA_DIR": str(workdir), "LTPDASH_RATE_LIMIT": str(rate_limit)}
    if not scale_out:
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        return workdir, env
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ltpdash_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/2")
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]
    subprocess.run(
        [*psql, "DROP DATABASE IF EXISTS ltpdash_bench"], check=False, capture_output=True
    )
    subprocess.run([*psql, "CREATE DATABASE ltpdash_bench"], check=True, capture_output=True)
    return workdir, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per scenario")
    parser.add_argument("--agents", type=int, default=4, help="concurrent agents")
    parser.add_argument("--window", type=int, default=32, help="frames in flight per agent")
    parser.add_argument("--scale-out", action="store_true", help="use DATABASE_URL / REDIS_URL")
    parser.add_argument(
        "--flood", action="store_true", help="one agent floods (socket, then HTTP), one works"
    )
    args = parser.parse_args()
    if args.flood:
        run_flood(args.scale_out)
        return

    workdir, env = scratch(args.scale_out, rate_limit=100000)
    mode = "PostgreSQL + Redis" if args.scale_out else "SQLite WAL + in-memory layer"
    print(f"ltpdash benchmark — {mode}; {args.frames} frames per scenario, {args.agents} agents")
    manage(env, "migrate", "--no-input", "-v0")
    tokens = {
        f"bench-{i}": manage(env, "createagent", f"bench-{i}", "--token-only")
        for i in range(args.agents)
    }
    server, port = start_daphne(env, workdir)
    try:
        wait_until_serving("127.0.0.1", port, server)
        rss_before = rss_kib(server.pid)
        results = asyncio.run(
            run(f"ws://127.0.0.1:{port}/ws/agent/", tokens, args.frames, args.window)
        )
        rss_after = rss_kib(server.pid)
    except Exception:
        print(f"the run failed; daphne's log: {workdir / 'daphne.log'}", file=sys.stderr)
        raise
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"{'scenario':34} {'frames/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in results.items():
        p50 = f"{figures['p50_ms']:.2f}" if "p50_ms" in figures else "-"
        p99 = f"{figures['p99_ms']:.2f}" if "p99_ms" in figures else "-"
        print(f"{name:34} {figures['frames_per_s']:>10.0f} {p50:>8} {p99:>8}")
    lone = results["lone_orientation"]["frames_per_s"] / results["lone_heartbeat"]["frames_per_s"]
    many = results["many_orientation"]["frames_per_s"] / results["many_heartbeat"]["frames_per_s"]
    pipe = results["many_orientation"]["frames_per_s"] / results["lone_orientation"]["frames_per_s"]
    print(f"ratio stored/heartbeat, one at a time : {lone:.2f}")
    print(f"ratio stored/heartbeat, pipelined     : {many:.2f}")
    print(f"ratio pipelined/one-at-a-time (stored): {pipe:.2f}")
    print(
        f"daphne RSS: {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after "
        f"(+{(rss_after - rss_before) / 1024:.1f} MiB)"
    )


def run_flood(scale_out: bool, limit: int = 100) -> None:
    from flood import flood, report

    workdir, env = scratch(scale_out, rate_limit=limit)
    manage(env, "migrate", "--no-input", "-v0")
    tokens = {
        name: manage(env, "createagent", name, "--token-only") for name in ("neighbour", "flooder")
    }
    server, port = start_daphne(env, workdir)
    try:
        wait_until_serving("127.0.0.1", port, server)
        figures = asyncio.run(flood(f"http://127.0.0.1:{port}", tokens))
    finally:
        server.terminate()
        server.wait(timeout=10)
    mode = "PostgreSQL + Redis" if scale_out else "SQLite WAL + in-memory layer"
    print(f"ltpdash flood benchmark — {mode}")
    print("\n".join(report(figures, limit)))


if __name__ == "__main__":
    main()
