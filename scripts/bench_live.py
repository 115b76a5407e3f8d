"""How fast the console's live pages follow events, against a real daphne process.

    .venv/bin/python scripts/bench_live.py                 # SQLite WAL + in-memory layer
    .venv/bin/python scripts/bench_live.py --scale-out     # PostgreSQL + Redis (one process)
    .venv/bin/python scripts/bench_live.py --samples 30 --viewers 10 --rate 100

Two figures, printed, not asserted:

- inbox: an agent's escalation frame sent -> the card on an operator's inbox socket, one
  escalation at a time (p50/p99 over `--samples`);
- viewers: `--viewers` sockets on one coordination's page while `--agents` agents send
  `--rate` frames/s into it; each frame sent -> its row on each viewer (p50/p99), the share of
  frames each viewer showed, and whether every viewer showed them in seq order, once; and
  daphne's CPU time per frame meanwhile (ingest and every viewer's updates: a figure the
  other work on a shared machine disturbs less than latencies).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets
from ltpdash_client import LtpClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_stack import cpu_seconds, scratch  # noqa: E402

from coordination.processes import daphne_command, free_port, wait_until_serving  # noqa: E402

COORDINATION = "live-bench"
MARK = re.compile(r"mark-(\d+)-end")
SEQ = re.compile(r'^(\d+)"')
ESCALATED = re.compile(r"esc-(\d+)-end")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


SETUP = """
import json
from django.test import Client
from django.contrib.auth.models import User
from coordination.models import Agent
from coordination.roles import grant
tokens = {f"agent-{i}": Agent.create_with_token(f"agent-{i}", scope="*")[1] for i in range(N)}
user = User.objects.create_user("ops")
grant(user, "approver")
client = Client()
client.force_login(user)
print(json.dumps({"tokens": tokens, "session": client.cookies["sessionid"].value}))
"""


def setup(env: dict, agents: int) -> dict:
    import json

    from bench_stack import manage

    manage(env, "migrate", "--no-input", "-v0")
    out = manage(env, "shell", "-c", SETUP.replace("N)", f"{agents})"))
    return json.loads(out.splitlines()[-1])


def frame(agent: str, n: int, body: dict) -> dict:
    return {
        "v": "0.1",
        "id": f"{agent}-{n}-{time.monotonic_ns()}",
        "ts": int(time.time() * 1000),
        "from": agent,
        "coordination_id": COORDINATION,
        **body,
    }


def orientation(agent: str, n: int) -> dict:
    payload = {"role": "bench", "intent": f"mark-{n}-end", "guardrails": ["none"]}
    return frame(agent, n, {"type": "orientation", "payload": payload})


def escalation(agent: str, n: int) -> dict:
    payload = {"result": {"n": n}, "branches": [{"action": "escalate", "reason": f"esc-{n}-end"}]}
    return frame(agent, n, {"type": "route_response", "payload": payload})


class Console:
    def __init__(self, port: int, session: str):
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        self.session = session

    def page(self, path: str) -> str:
        request = urllib.request.Request(self.http + path)  # noqa: S310
        request.add_header("Cookie", f"sessionid={self.session}")
        with urllib.request.urlopen(request) as response:  # noqa: S310
            return response.read().decode()

    async def socket(self, path: str) -> websockets.ClientConnection:
        return await websockets.connect(
            self.ws + path,
            additional_headers={"Cookie": f"sessionid={self.session}", "Origin": self.http},
            max_size=None,
        )

    def live_path(self) -> str:
        html = self.page(f"/coordinations/{COORDINATION}/")
        return re.search(r'ws-connect="([^"]+)"', html).group(1).replace("&amp;", "&")


async def inbox(console: Console, agent: LtpClient, samples: int) -> list[float]:
    socket = await console.socket("/ws/ui/escalations/?shown=")
    await socket.recv()  # the first render
    latencies = []
    for n in range(samples):
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        sending = asyncio.create_task(agent.send(escalation(agent.name, n)))
        while True:
            message = await asyncio.wait_for(socket.recv(), 10)
            if f"esc-{n}-end" in message:
                break
        latencies.append((time.perf_counter() - started) * 1000)
        [reply] = await sending
        assert reply["type"] == "ack", reply
    await socket.close()
    return latencies


def rows(message: str) -> list[tuple[int, int]]:
    """The (seq, mark) of the timeline rows in a message, oldest first (rows come newest
    first). Marks are in the order sent; agents' frames may be stored in another order."""
    start = message.find("afterbegin:#timeline-rows")
    if start < 0:
        return []
    end = message.find("hx-swap-oob", start + 30)
    found = []
    for row in message[start : end if end > 0 else None].split('<li id="frame-')[1:]:
        mark, seq = MARK.search(row), SEQ.match(row)
        if mark and seq:
            found.append((int(seq.group(1)), int(mark.group(1))))
    return found[::-1]


async def watch(socket, seen: list[tuple[int, int, float]], stop) -> None:
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(socket.recv(), 0.5)
        except TimeoutError:
            continue
        now = time.perf_counter()
        seen.extend((seq, n, now) for seq, n in rows(message))


async def viewers(console, clients, count: int, rate: float, seconds: float, pid: int) -> dict:
    path = console.live_path()
    sockets = [await console.socket(path) for _ in range(count)]
    for socket in sockets:
        await socket.recv()  # the first render
    sent: dict[int, float] = {}
    seen: list[list[tuple[int, int, float]]] = [[] for _ in sockets]
    stop = asyncio.Event()
    watchers = [asyncio.create_task(watch(s, seen[i], stop)) for i, s in enumerate(sockets)]
    cpu = cpu_seconds(pid)
    acks: list[float] = []
    failed: list[int] = []
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(n: int) -> None:
        agent = clients[n % len(clients)]
        sent[n] = time.perf_counter()
        try:
            [reply] = await agent.send(orientation(agent.name, n), timeout=60)
        except TimeoutError:
            failed.append(n)
            return
        acks.append((time.perf_counter() - sent[n]) * 1000)
        assert reply["type"] == "ack", reply

    tasks = []
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and any(len(s) < total for s in seen):
        await asyncio.sleep(0.1)
    cpu = cpu_seconds(pid) - cpu
    stop.set()
    await asyncio.gather(*watchers)
    for socket in sockets:
        await socket.close()
    latencies = [(at - sent[n]) * 1000 for s in seen for _, n, at in s]
    seqs = [[seq for seq, _, _ in s] for s in seen]
    marks = [[n for _, n, _ in s] for s in seen]
    pairs = zip(seqs, marks, strict=True)
    in_order = all(q == sorted(set(q)) and len(m) == len(set(m)) for q, m in pairs)
    return {
        "cpu_ms_per_frame": cpu * 1000 / total,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": pct(latencies, 0.99),
        "ack_p99": pct(acks, 0.99),
        "shown": [len(set(m)) / total for m in marks],
        "in_order_once": in_order,
        "unacked": len(failed),
        "achieved_rate": total / (time.perf_counter() - start),
    }


async def run(port: int, pid: int, setup_: dict, args) -> dict:
    console = Console(port, setup_["session"])
    url = f"ws://127.0.0.1:{port}/ws/agent/"
    tokens = setup_["tokens"]
    clients = [LtpClient(url, token, name, reconnect=False) for name, token in tokens.items()]
    for agent in clients:
        await agent.connect()
    try:
        # The coordination exists, and imports and caches are warm, before measuring.
        for n in range(20):
            await clients[0].send(orientation(clients[0].name, -1 - n))
        results = {"inbox": await inbox(console, clients[0], args.samples)}
        results["viewers"] = await viewers(
            console, clients, args.viewers, args.rate, args.seconds, pid
        )
    finally:
        for agent in clients:
            await agent.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100, help="frames/s from all agents")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--scale-out", action="store_true", help="PostgreSQL + Redis")
    args = parser.parse_args()
    workdir, env = scratch(args.scale_out, 100000)
    setup_ = setup(env, args.agents)
    port = free_port()
    log = (workdir / "daphne.log").open("w")
    server = subprocess.Popen(
        daphne_command("127.0.0.1", port, access_log=False),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until_serving("127.0.0.1", port, server)
        results = asyncio.run(run(port, server.pid, setup_, args))
    finally:
        server.terminate()
        server.wait(timeout=10)
    mode = "PostgreSQL + Redis" if args.scale_out else "SQLite WAL + in-memory layer"
    inbox_ms = results["inbox"]
    v = results["viewers"]
    print(f"ltpdash live-page benchmark — {mode} (daphne log: {workdir / 'daphne.log'})")
    print(
        f"inbox: escalation -> card on the inbox socket, {len(inbox_ms)} samples: "
        f"p50 {statistics.median(inbox_ms):.1f} ms, p99 {pct(inbox_ms, 0.99):.1f} ms, "
        f"max {max(inbox_ms):.1f} ms"
    )
    print(
        f"viewers: {args.viewers} viewers, {args.agents} agents at {args.rate:.0f} frames/s "
        f"(achieved {v['achieved_rate']:.0f}) for {args.seconds:.0f} s: frame -> row "
        f"p50 {v['p50']:.1f} ms, p99 {v['p99']:.1f} ms; ack p99 {v['ack_p99']:.1f} ms; "
        f"unacked {v['unacked']}; shown min {min(v['shown'], default=1):.1%}; "
        f"every viewer in seq order, once: {v['in_order_once']}; "
        f"daphne CPU {v['cpu_ms_per_frame']:.2f} ms per frame"
    )


if __name__ == "__main__":
    main()
