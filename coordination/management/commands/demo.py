"""Run the whole product on this machine: daphne, the sweeper and simulated agents playing
incident-4821, with a demo operator to log in as."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.models import Agent, Connection, Presence
from coordination.processes import daphne_command, port_in_use, wait_until_serving
from coordination.roles import ADMIN, grant

DEMO_HEARTBEAT_TIMEOUT = 10


class Command(BaseCommand):
    help = "Start daphne, the sweeper and the incident simulator, and print how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("LTPDASH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("LTPDASH_PORT", 8000)))
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument(
            "--no-simulator", action="store_true", help="Only the server and the sweeper."
        )

    def handle(
        self, host: str, port: int, username: str, password: str, no_simulator: bool, **options: Any
    ) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo creates a known login; it refuses to run in production mode.")
        _prepare(username, password)
        if port_in_use(host, port):
            raise CommandError(f"{host}:{port} is in use; pass --port or set LTPDASH_PORT.")
        # Stopped by a service manager (SIGTERM) like by Ctrl-C: take the children down too.
        signal.signal(signal.SIGTERM, _interrupt)
        children: list[subprocess.Popen[bytes]] = []
        try:
            self._start(children, host, port, simulator=not no_simulator)
            self._welcome(host, port, username, password, simulator=not no_simulator)
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            failed = next(child for child in children if child.poll() is not None)
            raise CommandError(f"{_name(failed)} exited with {failed.returncode}")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping…")
        finally:
            _stop(children)

    def _start(
        self, children: list[subprocess.Popen[bytes]], host: str, port: int, simulator: bool
    ) -> None:
        """daphne and the sweeper, then (once daphne serves) the simulated agents."""
        # The demo's specialist goes silent on purpose; a shorter heartbeat timeout than the
        # production default lets a newcomer see the fallback within seconds, not half a minute.
        env = {**os.environ}
        env.setdefault("LTPDASH_HEARTBEAT_TIMEOUT", str(DEMO_HEARTBEAT_TIMEOUT))
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]

        def start(command: list[str]) -> subprocess.Popen[bytes]:
            child = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env)
            children.append(child)
            return child

        server = start(daphne_command(host, port, access_log=False))
        start([*manage, "sweep"])
        try:
            wait_until_serving(host, port, server)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if simulator:
            start([*manage, "simulate", "--loop", "--url", f"ws://{host}:{port}/ws/agent/"])

    def _welcome(self, host: str, port: int, username: str, password: str, simulator: bool) -> None:
        story = (
            "Simulated agents are playing incident-4821; an escalation will wait for you\n"
            "in the Escalations inbox within a minute."
            if simulator
            else f"Agents connect to ws://{host}:{port}/ws/agent/."
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nltpdash is running: http://{host}:{port}/\n"
                f"Log in as {username} / {password} (role: admin).\n"
                f"{story} Ctrl-C stops everything.\n"
            )
        )


def _prepare(username: str, password: str) -> None:
    """Migrate, create the demo admin, and forget connections a killed run left counted."""
    call_command("migrate", interactive=False, verbosity=0)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    grant(user, ADMIN)
    # Nothing is connected before daphne starts; counts left by a previous run that was
    # killed would otherwise keep agents "online" forever.
    Connection.objects.all().delete()
    Agent.objects.update(presence=Presence.OFFLINE)


def _name(child: subprocess.Popen[bytes]) -> str:
    args = child.args
    return " ".join(map(str, args[:4])) if isinstance(args, list) else str(args)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
