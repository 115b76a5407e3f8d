from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination import routing
from coordination.management import os_user
from coordination.models import RoutingChange, RoutingRule


class Command(BaseCommand):
    help = "Show or edit the routing table. Every change is recorded with who made it."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Print the rules, then the latest changes.")
        edit = sub.add_parser("set", help="Route NEED to agents, in order of preference.")
        edit.add_argument("need")
        edit.add_argument("agents", help="Comma-separated agent names, preferred first.")
        delete = sub.add_parser("delete", help="Remove the rule for NEED.")
        delete.add_argument("need")
        for command in (edit, delete):
            command.add_argument(
                "--by", default="", help="Who is making the change (default: the OS user)."
            )

    def handle(self, action: str, **options: Any) -> None:
        if action == "list":
            return self._list()
        by = options["by"] or os_user()
        user = get_user_model().objects.filter(username=by).first()
        need = options["need"].strip()
        if not need:
            raise CommandError("NEED must not be empty.")
        if action == "set":
            names = routing.agent_names(options["agents"])
            try:
                unchanged = routing.set_rule(need, names, user=user, by=by) is None
            except routing.InvalidRule as exc:
                raise CommandError(str(exc)) from None
            if unchanged:
                self.stdout.write(f"{need} → {', '.join(names)}  (unchanged)")
            else:
                self.stdout.write(f"{need} → {', '.join(names)}  (recorded, by {by})")
        elif routing.delete_rule(need, user=user, by=by) is None:
            raise CommandError(f"There is no rule for {need!r}.")
        else:
            self.stdout.write(f"{need}: rule deleted  (recorded, by {by})")

    def _list(self) -> None:
        rules = RoutingRule.objects.all()
        if not rules:
            self.stdout.write("The routing table is empty.")
        for rule in rules:
            self.stdout.write(f"{rule.need} → {', '.join(rule.agents)}")
        changes = RoutingChange.objects.all()[:10]
        if changes:
            self.stdout.write("\nLatest changes:")
        for change in changes:
            after = ", ".join(change.after) if change.after is not None else "(deleted)"
            self.stdout.write(
                f"{change.changed_at:%Y-%m-%d %H:%M:%S} {change.changed_by_name}: "
                f"{change.need} → {after}"
            )
