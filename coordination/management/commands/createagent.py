from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.models import Agent


class Command(BaseCommand):
    help = "Create an agent and print its token (shown once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", default="")
        parser.add_argument(
            "--rotate", action="store_true", help="Issue a new token for an existing agent."
        )
        parser.add_argument(
            "--token-only", action="store_true", help="Print only the token (for scripts)."
        )

    def handle(self, name: str, role: str, rotate: bool, token_only: bool, **options: Any) -> None:
        existing = Agent.objects.filter(name=name).first()
        if existing and not rotate:
            raise CommandError(f"Agent {name!r} exists; use --rotate to issue a new token.")
        if existing:
            token = existing.rotate_token()
        else:
            _, token = Agent.create_with_token(name, role=role)
        if token_only:
            self.stdout.write(token)
            return
        self.stdout.write(f"Agent {name!r} {'token rotated' if existing else 'created'}.")
        self.stdout.write(f"Token (shown once, keep it secret): {token}")
        self.stdout.write("Connect with:  Authorization: Bearer <token>  to /ws/agent/")
