"""The benchmark's scenarios, each against a running stack (bench_stack.Stack); each returns
its figures as a flat dict of numbers, so repeated runs can be summarised figure by figure."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench_stack import OPERATOR, Stack, cpu_seconds, rss_kib
from bench_wire import AgentSocket, Operator, Viewer

# Every frame ltpdash acknowledged in this process, by sender: the chain check reads it.
ACKED: dict[str, dict[str, tuple[int | None, str | None]]] = {}
_RUNS = itertools.count(1)


def pct(values: Iterable[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def keep_acks(sockets: list[AgentSocket]) -> None:
    for socket in sockets:
        ACKED.setdefault(socket.name, {}).update(socket.acked)


async def open_all(sockets: list[AgentSocket], batch: int = 50) -> list[float]:
    """Connect in batches (as a fleet starting would); each socket's seconds to hello's ack."""
    times: list[float] = []
    for start in range(0, len(sockets), batch):
        times.extend(await asyncio.gather(*(s.open() for s in sockets[start : start + batch])))
    return times


async def open_idle(sockets: list[AgentSocket], batch: int = 50) -> list[AgentSocket]:
    """Connect in batches; the sockets that connected (a handshake the server did not answer
    in time is counted out, not fatal: how many connect is itself a figure)."""
    opened: list[AgentSocket] = []
    for start in range(0, len(sockets), batch):
        part = sockets[start : start + batch]
        results = await asyncio.gather(*(s.open() for s in part), return_exceptions=True)
        opened.extend(s for s, r in zip(part, results, strict=True) if isinstance(r, float))
    return opened


async def quiesce(pid: int, limit: float = 60.0) -> None:
    """Wait (at most `limit` s) until daphne is idle: what the last scenario left behind
    (closing sockets, a page's last render) is not measured in the next one."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        cpu = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - cpu < 0.05:
            return


async def close_all(sockets: list[Any], batch: int = 100) -> None:
    for start in range(0, len(sockets), batch):
        await asyncio.gather(*(s.close() for s in sockets[start : start + batch]))


def agents(
    stack: Stack, server: str, names: list[str], key: Callable[[int], str | None]
) -> list[AgentSocket]:
    url = f"{stack.ws(server)}/ws/agent/"
    return [AgentSocket(url, stack.tokens[n], n, key(i)) for i, n in enumerate(names)]


# --- 1. ingest throughput ---------------------------------------------------------------------


async def ingest(stack: Stack, server: str, names: list[str], window: int, seconds: float) -> dict:
    """C agents (one coordination each) keep `window` orientation frames in flight for
    `seconds`; frames acked per second until the last ack, and the server's CPU meanwhile."""
    run = next(_RUNS)
    sockets = agents(stack, server, names, lambda i: f"ingest-{run}-{i}")
    await open_all(sockets)
    pid = stack.pid(server)
    cpu, client_cpu, started = cpu_seconds(pid), time.process_time(), time.perf_counter()
    until = started + seconds
    latencies = list(
        itertools.chain(*await asyncio.gather(*(s.pump(window, until) for s in sockets)))
    )
    elapsed = time.perf_counter() - started
    figures = {
        "frames_per_s": len(latencies) / elapsed,
        "ack_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "ack_p99_ms": pct(latencies, 0.99),
        "server_cpu": (cpu_seconds(pid) - cpu) / elapsed,
        "client_cpu": (time.process_time() - client_cpu) / elapsed,
        "errors": sum(len(s.errors) for s in sockets),
    }
    if server != "bare":
        keep_acks(sockets)
    await close_all(sockets)
    return figures


# --- 2. live pages: light load and saturation ------------------------------------------------


async def watched(
    stack: Stack, names: list[str], viewers: int, coordinations: int, operator: Operator
) -> tuple[list[AgentSocket], list[Viewer], list[str], dict[str, float]]:
    """Agents spread over `coordinations` coordinations, each opened (hello) before the
    viewers' pages are loaded; viewers spread over the same coordinations."""
    run = next(_RUNS)
    keys = [f"live-{run}-{c}" for c in range(coordinations)]
    sockets = agents(stack, "main", names, lambda i: keys[i % coordinations])
    sent_at: dict[str, float] = {}
    for socket in sockets:
        socket.sent_at = sent_at
    await open_all(sockets)
    paths = [await asyncio.to_thread(operator.socket_path, f"/coordinations/{k}/") for k in keys]
    pages = [
        Viewer(stack.ws(), paths[v % coordinations], operator, sent_at) for v in range(viewers)
    ]
    await asyncio.gather(*(page.open() for page in pages))
    return sockets, pages, paths, sent_at


async def settle(sockets: list[AgentSocket], pages: list[Viewer], coordinations: int, limit: float):
    """Wait (at most `limit` s) until every viewer shows every frame acked in its
    coordination; the frames each viewer should show."""
    expected = [
        {i for s in sockets[c::coordinations] for i in s.pumped} for c in range(coordinations)
    ]
    wants = [expected[v % coordinations] for v in range(len(pages))]
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if all(want <= page.shown.keys() for want, page in zip(wants, pages, strict=True)):
            break
        await asyncio.sleep(0.1)
    return wants


def shown_figures(pages: list[Viewer], wants: list[set[str]]) -> dict:
    shares = [
        len(want & page.shown.keys()) / len(want) if want else 1.0
        for want, page in zip(wants, pages, strict=True)
    ]
    latencies = [
        (page.shown[i] - page.sent_at[i]) * 1000
        for want, page in zip(wants, pages, strict=True)
        for i in want
        if i in page.shown
    ]
    return {
        "shown_min": min(shares),
        "in_order": float(all(page.in_order for page in pages)),
        "viewer_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "viewer_p99_ms": pct(latencies, 0.99),
    }


async def live_load(
    stack: Stack,
    operator: Operator,
    names: list[str],
    spare: list[str],
    *,
    rate: float | None,
    seconds: float,
    viewers: int = 10,
    coordinations: int = 2,
    window: int = 32,
) -> dict:
    """`names` send orientation frames (`rate` frames/s in all, or as fast as acks allow
    when None) into coordinations watched by `viewers` live pages. At saturation, agents
    from `spare` and new pages connect meanwhile, timed to their first reply."""
    sockets, pages, paths, _ = await watched(stack, names, viewers, coordinations, operator)
    started = time.perf_counter()
    until = started + seconds
    each = rate / len(sockets) if rate else None
    # At a rate, the agents' clocks start 1/rate apart: 100 frames/s in all is a frame every
    # 10 ms, not all twenty agents' frames at once five times a second.
    pumps = asyncio.gather(
        *(s.pump(window, until, each, i / rate if rate else 0.0) for i, s in enumerate(sockets))
    )
    probes = None
    if rate is None:
        probes = asyncio.create_task(_probe(stack, operator, spare, paths[0], seconds))
    latencies = list(itertools.chain(*await pumps))
    elapsed = time.perf_counter() - started
    wants = await settle(sockets, pages, coordinations, 10 if rate else 60)
    figures = {
        "frames_per_s": len(latencies) / elapsed,
        "ack_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "ack_p99_ms": pct(latencies, 0.99),
        **shown_figures(pages, wants),
    }
    if probes is not None:
        figures.update(await probes)
    keep_acks(sockets)
    await close_all([*sockets, *pages])
    return figures


async def _probe(
    stack: Stack, operator: Operator, spare: list[str], path: str, seconds: float
) -> dict:
    """During saturation: a new agent socket (to hello's ack) and a new browser socket (to
    its first fragment), one of each every so often; the slowest of each in ms."""
    agent_ms, page_ms = [], []
    pause = seconds / (len(spare) + 1)
    for name in spare:
        await asyncio.sleep(pause)
        [socket] = agents(stack, "main", [name], lambda i: None)
        agent_ms.append(await socket.open() * 1000)
        await socket.close()
        page = Viewer(stack.ws(), path, operator, {})
        page_ms.append(await page.open() * 1000)
        await page.close()
    return {"new_agent_max_ms": max(agent_ms), "new_page_max_ms": max(page_ms)}


# --- 3. escalation to the inbox, and the decision back to the agent -------------------------

_CARD = '<article id="escalation-'


async def inbox(stack: Stack, agent_on: str, operator: Operator, page_on: str, samples: int):
    """An agent on `agent_on` asks for a critical action; the time until its card arrives on
    an operator's inbox socket on `page_on`; then the operator approves over HTTP (on
    `page_on`) and the time until the agent's socket holds the decision."""
    run = next(_RUNS)
    [agent] = agents(stack, agent_on, ["bench-asker"], lambda i: f"inbox-{run}")
    await agent.open()
    page = Viewer(stack.ws(page_on), operator.socket_path("/escalations/"), operator, {}, True)
    await page.open()
    to_inbox, round_trip = [], []
    for _ in range(samples):
        while not page.messages.empty():
            page.messages.get_nowait()
        request = agent.frame("route_request", {"target": "bench-peer", "action": "transfer_money"})
        asked = asyncio.create_task(agent.send(request))
        escalation, shown_at = await _new_card(page)
        to_inbox.append((shown_at - agent.sent_at[request["id"]]) * 1000)
        await asked
        decided = time.perf_counter()
        await asyncio.to_thread(operator.decide, escalation)
        round_trip.append((await _decision(agent, escalation) - decided) * 1000)
    await close_all([agent, page])
    keep_acks([agent])
    return {
        "inbox_p50_ms": statistics.median(to_inbox),
        "inbox_p99_ms": pct(to_inbox, 0.99),
        "decision_p50_ms": statistics.median(round_trip),
        "decision_p99_ms": pct(round_trip, 0.99),
    }


async def _new_card(page: Viewer) -> tuple[int, float]:
    while True:
        at, text = await asyncio.wait_for(page.messages.get(), 30)
        for piece in text.split(_CARD)[1:]:
            pk = piece.split('"', 1)[0]
            if pk.isdigit():
                return int(pk), at


async def _decision(agent: AgentSocket, escalation: int) -> float:
    while True:
        at, frame = await asyncio.wait_for(agent.inbox.get(), 30)
        payload = frame.get("payload") or {}
        if payload.get("escalation") == escalation and str(frame.get("from")).startswith("human:"):
            return at


# --- 4. memory with idle agents -------------------------------------------------------------


async def idle_memory(stack: Stack, names: list[str], hold: float, every: float = 5.0) -> dict:
    """`names` connect and stay idle, each heartbeating every `every` s, for `hold` s;
    daphne's RSS before and with them."""
    before = rss_kib(stack.pid())
    started = time.perf_counter()
    sockets = await open_idle(agents(stack, "main", names, lambda i: None))
    connected = time.perf_counter() - started
    latencies: list[float] = []

    async def beat(socket: AgentSocket) -> None:
        await asyncio.sleep(random.uniform(0, every))
        while True:
            sent = time.perf_counter()
            await socket.send(socket.frame("heartbeat", {"status": "ok"}))
            latencies.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(every)

    beats = [asyncio.create_task(beat(s)) for s in sockets]
    await asyncio.sleep(hold)
    during = rss_kib(stack.pid())
    for task in beats:
        task.cancel()
    await asyncio.gather(*beats, return_exceptions=True)
    await close_all(sockets)
    await quiesce(stack.pid())
    return {
        "agents": len(sockets),
        "rss_mib": during / 1024,
        "rss_before_mib": before / 1024,
        "kib_per_agent": (during - before) / len(sockets),
        "connect_s": connected,
        "heartbeat_p99_ms": pct(latencies, 0.99),
    }


def login(stack: Stack, server: str = "main") -> Operator:
    return Operator(stack.http(server), *OPERATOR)
