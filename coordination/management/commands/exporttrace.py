from django.core.management.base import BaseCommand, CommandError

from coordination.models import Coordination


class Command(BaseCommand):
    help = "Write a coordination's chain as an LTP audit trace (JSON Lines) to stdout."

    def add_arguments(self, parser):
        parser.add_argument("coordination", help="The coordination id, e.g. incident-4821.")

    def handle(self, coordination, **options):
        found = Coordination.objects.filter(key=coordination).first()
        if found is None:
            raise CommandError(f"No coordination {coordination!r}.")
        for line in found.trace_lines():
            self.stdout.write(line)
