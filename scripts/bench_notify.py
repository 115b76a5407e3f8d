"""Does a receiver that is down slow anything? The frame path and the decision round trip,
measured with notifications unset and with every receiver down (webhook and SMTP pointing at
closed ports), each against a real daphne with a real sweeper trying to send.

    .venv/bin/python scripts/bench_notify.py [--frames 400] [--decisions 40]

Decision round trip: an operator's POST of a decision until the agent's socket receives it.
Prints both figures per mode and the ratio down/unset (1.00 = no slower).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import frame, manage, sequential, start_daphne  # noqa: E402

from coordination.processes import free_port, wait_until_serving  # noqa: E402


class Operator:
    """Logged in through the real login form; posts decisions like a browser without htmx."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.post("/login/", {"username": username, "password": password})

    def csrf(self) -> str:
        found = [c.value for c in self.jar if c.name == "csrftoken"]
        if not found:
            page = self.opener.open(self.base + "/login/", timeout=30).read().decode()
            return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        return found[0]

    def post(self, path: str, data: dict) -> int:
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": self.csrf()}).encode()
        request = urllib.request.Request(self.base + path, data=body, method="POST")  # noqa: S310
        request.add_header("Referer", self.base + path)
        with self.opener.open(request, timeout=30) as response:
            return response.status


async def decisions(base: str, ws_url: str, token: str, operator: Operator, count: int):
    """Round trips in ms: critical request → escalation; decide → the agent receives it."""
    times = []
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        for n in range(count):
            request = frame("bench-0", n, "route_request", coordination="decisions")
            request["payload"] = {"target": "bench-1", "action": "delete_data"}
            await ws.send(json.dumps(request))
            escalation = None
            while escalation is None:
                reply = json.loads(await ws.recv())
                escalation = _escalation_id(reply)
            started = time.perf_counter()
            await asyncio.to_thread(
                operator.post, f"/escalations/{escalation}/decide/", {"verdict": "approve"}
            )
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("payload", {}).get("escalation") == escalation and reply.get(
                    "from", ""
                ).startswith("human:"):
                    await ws.send(json.dumps(_ack(reply)))
                    break
            times.append((time.perf_counter() - started) * 1000)
    return times


def _escalation_id(reply: dict) -> int | None:
    """The ltpdash step that escalated names no id; ask the console's inbox instead."""
    if reply.get("type") != "route_response":
        return None
    branches = reply.get("payload", {}).get("branches", [])
    if not any(b.get("action") == "escalate" for b in branches):
        return None
    return _latest_escalation()


def _ack(reply: dict) -> dict:
    return {"type": "ack", "payload": {"frame_id": reply["id"]}}


ENV: dict = {}


def _latest_escalation() -> int:
    out = manage(
        ENV,
        "shell",
        "-c",
        "from coordination.models import Escalation as E; print(E.objects.latest('pk').pk)",
    )
    return int(out.splitlines()[-1])


def measure(mode: str, frames: int, count: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"ltpdash-bench-notify-{mode}-"))
    env = {**os.environ, "LTPDASH_DATA_DIR": str(workdir), "LTPDASH_RATE_LIMIT": "100000"}
    for name in ("DATABASE_URL", "REDIS_URL", "LTPDASH_WEBHOOK_URLS", "LTPDASH_EMAIL_HOST"):
        env.pop(name, None)
    if mode == "down":
        env.update(
            LTPDASH_WEBHOOK_URLS=f"http://127.0.0.1:{free_port()}/hook",
            LTPDASH_WEBHOOK_SECRET="bench",
            LTPDASH_EMAIL_HOST="127.0.0.1",
            LTPDASH_EMAIL_PORT=str(free_port()),
        )
    ENV.clear()
    ENV.update(env)
    manage(env, "migrate", "--no-input", "-v0")
    tokens = [manage(env, "createagent", f"bench-{i}", "--token-only") for i in range(2)]
    manage(env, "createoperator", "boss", "--role", "admin", "--password", "bench-pass-1")
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='boss').update(email='boss@example.test')",
    )
    server, port = start_daphne(env, workdir)
    sweeper = subprocess.Popen(
        [sys.executable, "manage.py", "sweep"],
        cwd=ROOT,
        env=env,
        stdout=(workdir / "sweep.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving("127.0.0.1", port, server)
        ws_url, base = f"ws://127.0.0.1:{port}/ws/agent/", f"http://127.0.0.1:{port}"
        asyncio.run(sequential(ws_url, tokens[0], "bench-0", 50, "orientation"))  # warm up
        lat = asyncio.run(sequential(ws_url, tokens[0], "bench-0", frames, "orientation"))
        operator = Operator(base, "boss", "bench-pass-1")
        rtt = asyncio.run(decisions(base, ws_url, tokens[0], operator, count))
        owed = manage(
            env,
            "shell",
            "-c",
            "from coordination.notifications import "
            "Notification as N; print(N.objects.filter(status='pending').count())",
        )
    finally:
        for process in (sweeper, server):
            process.terminate()
            process.wait(timeout=10)
    return {
        "frames_per_s": len(lat) / (sum(lat) / 1000),
        "frame_p50_ms": statistics.median(lat),
        "decision_p50_ms": statistics.median(rtt),
        "decision_mean_ms": statistics.fmean(rtt),
        "pending": owed.splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="unset/down pairs, interleaved")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"unset": [], "down": []}
    for _ in range(args.rounds):
        # Interleaved, so a noisy neighbour on the machine hits both modes alike.
        for mode in runs:
            runs[mode].append(measure(mode, args.frames, args.decisions))
    results = {
        mode: {key: statistics.median(float(r[key]) for r in rs) for key in rs[0]}
        for mode, rs in runs.items()
    }
    print(f"medians of {args.rounds} round(s); {args.frames} frames, {args.decisions} decisions")
    print(
        f"{'mode':8} {'frames/s':>9} {'frame p50':>10} {'decision p50':>13} "
        f"{'decision mean':>14} {'pending':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:8} {r['frames_per_s']:>9.0f} {r['frame_p50_ms']:>8.2f}ms "
            f"{r['decision_p50_ms']:>11.1f}ms {r['decision_mean_ms']:>12.1f}ms "
            f"{r['pending']:>8.0f}"
        )
    down, unset = results["down"], results["unset"]
    print(f"ratio down/unset, frames/s     : {down['frames_per_s'] / unset['frames_per_s']:.2f}")
    print(
        f"ratio down/unset, decision p50 : {down['decision_p50_ms'] / unset['decision_p50_ms']:.2f}"
    )


if __name__ == "__main__":
    main()
