from collections.abc import Callable, Iterable

from coordination import notify_send
from coordination.management import PassCommand


class Command(PassCommand):
    help = (
        "Send owed notifications (email, webhooks, Slack) and owe reminders of nearing "
        "escalation deadlines. The sweeper does this too; run this to keep slow receivers "
        "off the sweeper's pass. Safe to run as several copies."
    )
    doing = "Sending"

    def one_pass(self) -> Iterable[str]:
        return notify_send.run_pass(budget=None)

    def loop(self, interval: float, write: Callable[[str], None]) -> None:
        notify_send.run(interval, write)
