import contextlib
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from coordination import sweeper


class Command(BaseCommand):
    help = (
        "Apply passed deadlines: silent agents, unanswered route requests, undecided "
        "escalations. Safe to run as several copies. Loops every LTPDASH_SWEEP_INTERVAL_MS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, once: bool, **options: Any) -> None:
        if once:
            for line in sweeper.sweep():
                self.stdout.write(line)
            return
        self.stdout.write(f"Sweeping every {settings.SWEEP_INTERVAL:g}s (Ctrl-C to stop).")
        with contextlib.suppress(KeyboardInterrupt):
            sweeper.run(settings.SWEEP_INTERVAL, self._write)

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
