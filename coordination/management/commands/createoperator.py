import getpass
import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.roles import ROLES, grant


class Command(BaseCommand):
    help = (
        "Create a console operator with a role (viewer, approver or admin). Without "
        "--password, asks for one on a terminal, or generates one and prints it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=list(ROLES))
        parser.add_argument("--password", help="Set this password (visible in shell history).")
        parser.add_argument("--email", default="")

    def handle(
        self, username: str, role: str, password: str | None, email: str, **options: Any
    ) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(
                f"Operator {username!r} exists; change the role with: setrole {username} ROLE"
            )
        generated = False
        if password is None:
            if sys.stdin.isatty():
                password = _ask()
            else:
                password, generated = secrets.token_urlsafe(12), True
        user = User(username=username, email=email)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        user.set_password(password)
        user.save()
        grant(user, role)
        self.stdout.write(f"Operator {username!r} created with role {role}.")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")


def _ask() -> str:
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise CommandError("The passwords differ.")
    return first
