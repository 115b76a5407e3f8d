"""The flood case (issue 9): one agent floods, its neighbour should not notice.

A neighbour sends one frame at a time and times each ack: first alone (quiet), then while a
flooder sends 200-frame lists over its socket, then while it posts 500-frame HTTP batches,
each for `seconds`. Reports the flooder's acknowledged frames per second (the budget should
hold it near the limit, at most about twice it) and the neighbour's ack p99 in each phase
(it should stay within 2x quiet + 20 ms). Used by `./scripts/bench.sh --flood` and by
tests/test_flood.py against a real daphne.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import websockets


def _frame(agent: str, n: int, tag: str, coordination: str) -> dict[str, Any]:
    return {
        "v": "0.1", "id": f"{agent}-{tag}-{n}-{time.monotonic_ns()}",
        "ts": int(time.time() * 1000), "type": "orientation", "from": agent,
        "coordination_id": coordination, "payload": {"intent": f"step {n}"},
    }  # fmt: skip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


async def neighbour(ws_url: str, token: str, agent: str, seconds: float, tag: str) -> list[float]:
    """One frame at a time for `seconds`: each ack's latency in ms."""
    latencies = []
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            await ws.send(json.dumps(_frame(agent, n, tag, "flood-neighbour")))
            reply = json.loads(await ws.recv())
            latencies.append((time.perf_counter() - started) * 1000)
            assert reply["type"] == "ack", reply
            await asyncio.sleep(0.01)  # an agent doing work between frames
    return latencies


async def socket_flood(ws_url: str, token: str, agent: str, seconds: float) -> int:
    """200-frame lists as fast as the socket takes them; acknowledged frames counted."""
    acked = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(ws_url, additional_headers=headers, max_queue=None) as ws:

        async def read() -> None:
            nonlocal acked
            async for message in ws:
                acked += json.loads(message)["type"] == "ack"

        reader = asyncio.create_task(read())
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            batch = [_frame(agent, n * 200 + i, "sock", "flood") for i in range(200)]
            n += 1
            await ws.send(json.dumps(batch))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the last answers
        reader.cancel()
    return acked


def http_flood(http_base: str, token: str, agent: str, seconds: float) -> int:
    """500-frame batches back to back; acknowledged frames counted."""
    acked = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        batch = [_frame(agent, n * 500 + i, "http", "flood") for i in range(500)]
        n += 1
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps(batch).encode()
        request = urllib.request.Request(f"{http_base}/api/v1/frames", body, headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            assert error.code == 429, error.code
            answer = json.loads(error.read())
        acked += sum(reply["type"] == "ack" for reply in answer["frames"])
    return acked


async def flood(
    http_base: str, tokens: dict[str, str], seconds: float = 4.0, quiet_seconds: float = 3.0
) -> dict[str, float]:
    """`tokens`: {"neighbour": token, "flooder": token} of agents named so."""
    ws_url = http_base.replace("http", "ws", 1) + "/ws/agent/"
    quiet = await neighbour(ws_url, tokens["neighbour"], "neighbour", quiet_seconds, "quiet")
    near_socket, socket_acked = await asyncio.gather(
        neighbour(ws_url, tokens["neighbour"], "neighbour", seconds, "sock"),
        _flooder("socket", http_base, tokens["flooder"], seconds),
    )
    await asyncio.sleep(2.5)  # the budget refills: the HTTP flood starts with a full burst
    near_http, http_acked = await asyncio.gather(
        neighbour(ws_url, tokens["neighbour"], "neighbour", seconds, "http"),
        _flooder("http", http_base, tokens["flooder"], seconds),
    )
    return {
        "quiet_p50_ms": pct(quiet, 0.5),
        "socket_flood_p50_ms": pct(near_socket, 0.5),
        "http_flood_p50_ms": pct(near_http, 0.5),
        "quiet_p99_ms": pct(quiet, 0.99),
        "socket_flood_p99_ms": pct(near_socket, 0.99),
        "http_flood_p99_ms": pct(near_http, 0.99),
        "socket_flood_acked_per_s": socket_acked / seconds,
        "http_flood_acked_per_s": http_acked / seconds,
        "neighbour_frames": float(len(quiet) + len(near_socket) + len(near_http)),
    }


async def _flooder(transport: str, http_base: str, token: str, seconds: float) -> int:
    """The flooder runs in a process of its own: building and parsing its big messages must
    not slow the neighbour's client down, or the figures would measure the client."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, transport, http_base, token, str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the {transport} flooder failed ({process.returncode})")
    return int(out.decode().split()[-1])


def report(figures: dict[str, float], limit: int) -> list[str]:
    bound = 2 * figures["quiet_p99_ms"] + 20
    return [
        f"flood: limit {limit} frames/s per agent",
        f"  flooder acked, socket (200-frame lists) : {figures['socket_flood_acked_per_s']:.0f}/s",
        f"  flooder acked, HTTP (500-frame batches) : {figures['http_flood_acked_per_s']:.0f}/s",
        f"  neighbour ack p99 quiet                  : {figures['quiet_p99_ms']:.1f} ms",
        f"  neighbour ack p99 during socket flood    : {figures['socket_flood_p99_ms']:.1f} ms",
        f"  neighbour ack p99 during HTTP flood      : {figures['http_flood_p99_ms']:.1f} ms",
        f"  neighbour ack p50 quiet / socket / HTTP  : {figures['quiet_p50_ms']:.1f} / "
        f"{figures['socket_flood_p50_ms']:.1f} / {figures['http_flood_p50_ms']:.1f} ms",
        f"  (goal: acked <= {2 * limit}/s; p99 <= 2 x quiet + 20 ms = {bound:.1f} ms)",
    ]


if __name__ == "__main__":
    transport, base, flooder_token, duration = sys.argv[1:5]
    if transport == "socket":
        url = base.replace("http", "ws", 1) + "/ws/agent/"
        count = asyncio.run(socket_flood(url, flooder_token, "flooder", float(duration)))
    else:
        count = http_flood(base, flooder_token, "flooder", float(duration))
    print(count)
