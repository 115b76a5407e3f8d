from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.roles import ROLES, grant


class Command(BaseCommand):
    help = "Give an operator exactly one role: viewer, approver or admin (replacing the old one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=list(ROLES))

    def handle(self, username: str, role: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No operator {username!r}; create one with createoperator.")
        grant(user, role)
        self.stdout.write(f"{username} is now {role}.")
