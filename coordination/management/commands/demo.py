"""Run the whole product on this machine: daphne, the sweeper and simulated agents playing
incident-4821, with a demo operator to log in as."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from coordination.models import Agent, Presence
from coordination.processes import daphne_command, port_in_use, wait_until_serving
from coordination.roles import ADMIN, grant

DEMO_HEARTBEAT_TIMEOUT = 10


class Command(BaseCommand):
    help = "Start daphne, the sweeper and the incident simulator, and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("LTPDASH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("LTPDASH_PORT", 8000)))
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument(
            "--no-simulator", action="store_true", help="Only the server and the sweeper."
        )

    def handle(self, host, port, username, password, no_simulator, **options):
        if settings.PRODUCTION:
            raise CommandError("demo creates a known login; it refuses to run in production mode.")
        call_command("migrate", interactive=False, verbosity=0)
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        grant(user, ADMIN)
        # Nothing is connected before daphne starts; counts left by a previous run that was
        # killed would otherwise keep agents "online" forever.
        Agent.objects.update(connections=0, presence=Presence.OFFLINE)
        if port_in_use(host, port):
            raise CommandError(f"{host}:{port} is in use; pass --port or set LTPDASH_PORT.")

        # Stopped by a service manager (SIGTERM) like by Ctrl-C: take the children down too.
        signal.signal(signal.SIGTERM, _interrupt)
        # The demo's specialist goes silent on purpose; a shorter heartbeat timeout than the
        # production default lets a newcomer see the fallback within seconds, not half a minute.
        env = {**os.environ}
        env.setdefault("LTPDASH_HEARTBEAT_TIMEOUT", str(DEMO_HEARTBEAT_TIMEOUT))
        python = sys.executable
        manage = [python, str(settings.BASE_DIR / "manage.py")]
        children = [
            subprocess.Popen(
                daphne_command(host, port, access_log=False), cwd=settings.BASE_DIR, env=env
            ),
            subprocess.Popen([*manage, "sweep"], cwd=settings.BASE_DIR, env=env),
        ]
        try:
            try:
                wait_until_serving(host, port, children[0])
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            if not no_simulator:
                children.append(
                    subprocess.Popen(
                        [*manage, "simulate", "--loop", "--url", f"ws://{host}:{port}/ws/agent/"],
                        cwd=settings.BASE_DIR,
                        env=env,
                    )
                )
            url = f"http://{host}:{port}/"
            story = (
                "Agents connect to {ws}."
                if no_simulator
                else "Simulated agents are playing incident-4821; an escalation will wait for you\n"
                "in the Escalations inbox within a minute."
            ).format(ws=f"ws://{host}:{port}/ws/agent/")
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nltpdash is running: {url}\n"
                    f"Log in as {username} / {password} (role: admin).\n"
                    f"{story} Ctrl-C stops everything.\n"
                )
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            failed = next(child for child in children if child.poll() is not None)
            raise CommandError(f"{' '.join(failed.args[:4])} exited with {failed.returncode}")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping…")
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
