"""Play incident-4821 with four real agents over real websockets (ltpdash_client).

    triage-agent     declares its orientation, asks the database agent (by need, through the
                     routing table), then asks metrics-agent for queue depth and error rate
    metrics-agent    goes silent (connected, no heartbeat): the sweeper notices, and the
                     request falls back to metrics-agent-b, with the reason in the chain
    metrics-agent-b  answers, and escalates because a guardrail stops it paging the DB,
                     proposing page_db_oncall(service=orders-db) if a human approves
    db-agent         answers the triage agent's database question

`--once` returns as soon as the escalation waits for a human (the tests use it). `--loop`
waits for the decision, lets the agents react to it, and plays a fresh incident-<n>.
The simulator uses the server's database directly only to issue the agents' tokens, set up
the routing rules it relies on, and watch for the silence; everything the agents say goes
over the websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from ltpdash_client import LtpClient

from coordination import routing
from coordination.models import Agent, Coordination, Presence, RoutingRule

# The fleet speaks in every incident it plays (its tokens are scoped to them): agents join
# an incident before anyone routes a question to them.
SCOPE = "incident-*"
FIRST_INCIDENT = 4821
# name: (role, capabilities, guardrails, intent)
CAST = {
    "triage-agent": ("triage-agent", ["triage"], ["no production writes"], "diagnose backlog"),
    "metrics-agent": ("metrics-agent", ["metrics"], ["read-only", "cannot page DB"],
                      "report queue metrics"),
    "metrics-agent-b": ("metrics-agent", ["metrics"], ["read-only", "cannot page DB"],
                        "report queue metrics (standby)"),
    "db-agent": ("db-agent", ["database"], ["read replicas only", "no schema changes"],
                 "inspect the database"),
}  # fmt: skip
# metrics-agent-b's escalation says what approving it does (shown on the escalation card).
ESCALATION = {
    "action": "escalate",
    "reason": "guardrail: cannot page DB",
    "proposal": {"action": "page_db_oncall", "args": {"service": "orders-db"}},
}
RULES = {"metrics": ["metrics-agent", "metrics-agent-b"], "database": ["db-agent"]}
RECEIVE_TIMEOUT = 30.0


@dataclass
class Incident:
    key: str
    agents: dict[str, LtpClient]
    beats: dict[str, asyncio.Task]

    @property
    def triage(self) -> LtpClient:
        return self.agents["triage-agent"]


class Command(BaseCommand):
    help = "Play incident-4821 with four agents over real websockets (--once, or --loop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default="ws://127.0.0.1:8000/ws/agent/", help="The agent websocket URL."
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--once",
            action="store_true",
            help="Play one incident and return once its escalation is pending (the default).",
        )
        mode.add_argument(
            "--loop", action="store_true", help="Play fresh incidents one after another."
        )
        parser.add_argument(
            "--speed", type=float, default=1.0, help="Pauses between steps are divided by this."
        )

    def handle(self, url: str, once: bool, loop: bool, speed: float, **options: Any) -> None:
        if speed <= 0:
            raise CommandError("--speed must be positive.")
        self.url, self.speed = url, speed
        self.tokens = cast_tokens()
        for need, names in RULES.items():
            if not RoutingRule.objects.filter(need__iexact=need).exists():
                routing.set_rule(need, names, by="simulate")
        # The server and the simulator share settings: beat well inside the silence timeout.
        self.beat = max(0.2, settings.HEARTBEAT_TIMEOUT / 3)
        try:
            asyncio.run(self.run(loop))
        except KeyboardInterrupt:
            pass
        except (TimeoutError, OSError) as exc:
            raise CommandError(f"The simulation stopped: {exc!r}") from exc

    async def run(self, loop: bool) -> None:
        while True:
            key = await sync_to_async(next_incident_key)()
            await self.play(key, wait_for_decision=loop)
            if not loop:
                return
            await self.pause(10)

    # -- the incident, one act at a time -------------------------------------------------------

    async def play(self, key: str, wait_for_decision: bool) -> None:
        self.say(key, f"starting; agents connect to {self.url}")
        async with contextlib.AsyncExitStack() as stack:
            incident = await self.connect(stack, key)
            await self.orient(incident)
            await self.ask_the_database(incident)
            await self.silence_metrics_agent(incident)
            escalated = await self.fall_back_and_escalate(incident)
            if wait_for_decision:
                await self.react_to_the_decision(incident, escalated)

    async def connect(self, stack: contextlib.AsyncExitStack, key: str) -> Incident:
        agents: dict[str, LtpClient] = {}
        for name, (role, capabilities, _, _) in CAST.items():
            client = LtpClient(
                self.url,
                self.tokens[name],
                name,
                coordination_id=key,
                hello={"role": role, "capabilities": capabilities},
            )
            agents[name] = await stack.enter_async_context(client)
        beats = {name: asyncio.create_task(self.heartbeats(c)) for name, c in agents.items()}
        stack.callback(lambda: [task.cancel() for task in beats.values()])
        return Incident(key, agents, beats)

    async def orient(self, incident: Incident) -> None:
        for name, client in incident.agents.items():
            role, _, guardrails, intent = CAST[name]
            await client.send(
                {"orientation": {"role": role, "intent": intent, "guardrails": guardrails}}
            )
        await incident.triage.send(
            {
                "focus_snapshot": {
                    "coordination_id": incident.key,
                    "state": "order queue backlog growing; triage started",
                    "health": "WARN",
                }
            }
        )
        self.say(incident.key, "orientations declared (guardrails stored with every frame)")
        await self.pause(2)

    async def ask_the_database(self, incident: Incident) -> None:
        """1. A request by need: the routing table sends it to db-agent."""
        triage, db = incident.triage, incident.agents["db-agent"]
        asked = await self.ask(
            triage, {"need": "database", "intent": "replication lag and connection pool"}
        )
        question = await db.receive(type="route_request", timeout=RECEIVE_TIMEOUT)
        await db.send(
            {
                "route_response": {
                    "in_reply_to": question["id"],
                    "result": {"replication_lag_s": 0.4, "pool_in_use": 97, "pool_size": 100},
                }
            }
        )
        await triage.receive(
            type="route_response", where=_from("db-agent", asked), timeout=RECEIVE_TIMEOUT
        )
        self.say(incident.key, "db-agent answered: pool 97/100 in use, replication lag 0.4s")
        await self.pause(2)

    async def silence_metrics_agent(self, incident: Incident) -> None:
        """2. metrics-agent stays connected but stops its heartbeat."""
        incident.beats["metrics-agent"].cancel()
        self.say(
            incident.key,
            f"metrics-agent goes silent (the sweeper notices after "
            f"{settings.HEARTBEAT_TIMEOUT}s without a heartbeat)",
        )
        await self.until_silent("metrics-agent")

    async def fall_back_and_escalate(self, incident: Incident) -> str:
        """3. The seed request (PROTOCOL §2) to the silent agent: ltpdash falls back, and
        metrics-agent-b escalates, saying what it will do if approved. Returns the id of the
        escalated frame."""
        triage, metrics_b, key = incident.triage, incident.agents["metrics-agent-b"], incident.key
        role, _, guardrails, intent = CAST["triage-agent"]
        asked = await self.ask(
            triage,
            {"target": "metrics-agent", "need": "queue depth and error rate"},
            orientation={"role": role, "intent": intent, "guardrails": guardrails},
        )
        step = await triage.receive(
            type="route_response", where=_from("ltpdash", asked), timeout=RECEIVE_TIMEOUT
        )
        self.say(key, f"ltpdash: {step['payload']['branches'][0]['reason']}")
        question = await metrics_b.receive(type="route_request", timeout=RECEIVE_TIMEOUT)
        acks = await metrics_b.send(
            {
                "route_response": {
                    "target": "metrics-agent-b",
                    "in_reply_to": question["id"],
                    "result": {"queue_depth": 1240, "error_rate": 0.07},
                    "branches": [ESCALATION],
                },
                "focus_snapshot": {
                    "coordination_id": key,
                    "state": "diagnosis pending human approval",
                    "health": "CRITICAL",
                },
            }
        )
        await triage.receive(
            type="route_response", where=_from("metrics-agent-b", asked), timeout=RECEIVE_TIMEOUT
        )
        self.say(
            key,
            "metrics-agent-b answered (queue depth 1240, error rate 7%) and escalated: "
            f"guardrail: cannot page DB. Decide it at {self.console_url('escalations/')}",
        )
        return acks[0]["payload"]["frame_id"]

    async def react_to_the_decision(self, incident: Incident, escalated: str) -> None:
        """4. The human decides (or the deadline's default applies); the agents react."""
        metrics_b, key = incident.agents["metrics-agent-b"], incident.key
        decision = await metrics_b.receive(
            type="route_response",
            where=lambda f: (
                f["payload"].get("in_reply_to") == escalated
                and f["payload"].get("branches", [{}])[0].get("action") in {"approve", "reject"}
            ),
            timeout=float(settings.ESCALATION_DEADLINE) * 2 + 60,
        )
        branch = decision["payload"]["branches"][0]
        self.say(key, f"{decision['from']} decided: {branch['action']} ({branch['reason']})")
        approved = branch["action"] == "approve"
        await metrics_b.send(
            {
                "focus_snapshot": {
                    "coordination_id": key,
                    "state": "DB on-call paged; backlog draining"
                    if approved
                    else "paging refused; diagnosing without the DB",
                    "health": "WARN",
                }
            }
        )
        await self.pause(3)
        await incident.triage.send(
            {
                "focus_snapshot": {
                    "coordination_id": key,
                    "state": "resolved: queue back to normal"
                    if approved
                    else "mitigated: consumers scaled out",
                    "health": "OK",
                }
            }
        )
        self.say(key, "done")

    async def ask(self, triage: LtpClient, request: dict[str, Any], **extra: Any) -> str:
        acks = await triage.send({**extra, "route_request": request})
        return next(
            a["payload"]["frame_id"]
            for a in acks
            if a["payload"]["frame_id"].endswith(":route_request")
        )

    async def heartbeats(self, client: LtpClient) -> None:
        seq = 0
        while True:
            seq += 1
            with contextlib.suppress(Exception):
                await client.send(
                    {"type": "heartbeat", "payload": {"seq": seq, "status": "ok"}},
                    timeout=self.beat,
                )
            await asyncio.sleep(self.beat)

    async def until_silent(self, name: str) -> None:
        patience = settings.HEARTBEAT_TIMEOUT * 3 + 30
        started = time.monotonic()
        while time.monotonic() - started < patience:
            if await sync_to_async(presence_of)(name) == Presence.SILENT:
                return
            await asyncio.sleep(0.2)
        raise CommandError(
            f"{name} was not marked silent within {patience}s: is `manage.py sweep` running "
            "against the same database?"
        )

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    def say(self, key: str, line: str) -> None:
        self.stdout.write(f"{time.strftime('%H:%M:%S')} {key}: {line}")
        self.stdout.flush()

    def console_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return urlunsplit((scheme, parts.netloc, "/" + path, "", ""))


def _from(sender: str, request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["from"] == sender and f["payload"].get("in_reply_to") == request_id


def cast_tokens() -> dict[str, str]:
    """A fresh token for each simulated agent (created on first use): the simulator runs with
    the server's settings and database, so it issues them itself."""
    tokens = {}
    for name, (role, *_rest) in CAST.items():
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            agent, tokens[name] = Agent.create_with_token(name, role=role, scope=SCOPE)
        else:
            tokens[name] = agent.rotate_token()
            Agent.objects.filter(pk=agent.pk).update(scope=SCOPE)
    return tokens


def next_incident_key() -> str:
    n = FIRST_INCIDENT
    while Coordination.objects.filter(key=f"incident-{n}").exists():
        n += 1
    return f"incident-{n}"


def presence_of(name: str) -> str:
    return Agent.objects.values_list("presence", flat=True).get(name=name)
