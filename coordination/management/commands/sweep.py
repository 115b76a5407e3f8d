from collections.abc import Callable, Iterable

from coordination import sweeper
from coordination.management import PassCommand


class Command(PassCommand):
    help = (
        "Apply passed deadlines: silent agents, unanswered route requests, undecided "
        "escalations. Safe to run as several copies. Loops every LTPDASH_SWEEP_INTERVAL_MS."
    )
    doing = "Sweeping"

    def one_pass(self) -> Iterable[str]:
        return sweeper.sweep()

    def loop(self, interval: float, write: Callable[[str], None]) -> None:
        sweeper.run(interval, write)
