"""ltpdash's management commands (in commands/), and what they share."""

import contextlib
import getpass
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


def os_user() -> str:
    """Who runs a command, for the record of what it changed (routing, tokens, roles)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


class PassCommand(BaseCommand):
    """A command that makes one pass (`--once`) or loops every LTPDASH_SWEEP_INTERVAL_MS until
    Ctrl-C: `sweep` and `notify`. Safe to run as several copies (work is claimed)."""

    doing = "Working"

    def one_pass(self) -> Iterable[str]:
        raise NotImplementedError

    def loop(self, interval: float, write: Callable[[str], None]) -> None:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, once: bool, **options: Any) -> None:
        if once:
            for line in self.one_pass():
                self.stdout.write(line)
            return
        self.stdout.write(f"{self.doing} every {settings.SWEEP_INTERVAL:g}s (Ctrl-C to stop).")
        with contextlib.suppress(KeyboardInterrupt):
            self.loop(settings.SWEEP_INTERVAL, self._write)

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
