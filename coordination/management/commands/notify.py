import contextlib
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from coordination import notify_send


class Command(BaseCommand):
    help = (
        "Send owed notifications (email, webhooks, Slack) and owe reminders of nearing "
        "escalation deadlines. The sweeper does this too; run this to keep slow receivers "
        "off the sweeper's pass. Safe to run as several copies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, once: bool, **options: Any) -> None:
        if once:
            for line in notify_send.run_pass(budget=None):
                self.stdout.write(line)
            return
        self.stdout.write(f"Sending every {settings.SWEEP_INTERVAL:g}s (Ctrl-C to stop).")
        with contextlib.suppress(KeyboardInterrupt):
            notify_send.run(settings.SWEEP_INTERVAL, self._write)

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
