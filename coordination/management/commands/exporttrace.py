from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.models import Coordination


class Command(BaseCommand):
    help = "Write a coordination's chain as an LTP audit trace (JSON Lines) to stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("coordination", help="The coordination id, e.g. incident-4821.")

    def handle(self, coordination: str, **options: Any) -> None:
        found = Coordination.objects.filter(key=coordination).first()
        if found is None:
            raise CommandError(f"No coordination {coordination!r}.")
        for line in found.trace_lines():
            self.stdout.write(line)
