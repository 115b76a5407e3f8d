from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.management import os_user
from coordination.models import Act, OperatorAct
from coordination.roles import ROLES, grant


class Command(BaseCommand):
    help = "Give an operator exactly one role: viewer, approver or admin (replacing the old one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=[*ROLES, "none"], help="'none' takes every role away.")

    def handle(self, username: str, role: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No operator {username!r}; create one with createoperator.")
        grant(user, None if role == "none" else role)
        OperatorAct.record(None, Act.ROLE_CHANGED, username, by=os_user(), role=role)
        self.stdout.write(
            f"{username} is now {role}." if role != "none" else f"{username} has no role now."
        )
