from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.management import os_user
from coordination.models import Act, Agent, OperatorAct


class Command(BaseCommand):
    help = "Create an agent and print its token (shown once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", default="")
        parser.add_argument(
            "--rotate", action="store_true", help="Issue a new token for an existing agent."
        )
        parser.add_argument(
            "--revoke",
            action="store_true",
            help="Revoke the agent's token: no token works (open sockets close) until --rotate.",
        )
        parser.add_argument(
            "--scope",
            default=None,
            help="Coordination ids the agent may speak in without being routed or admitted: "
            "comma-separated glob patterns, e.g. 'incident-*' ('' for none).",
        )
        parser.add_argument(
            "--token-only", action="store_true", help="Print only the token (for scripts)."
        )

    def handle(
        self,
        name: str,
        role: str,
        rotate: bool,
        revoke: bool,
        scope: str | None,
        token_only: bool,
        **options: Any,
    ) -> None:
        existing = Agent.objects.filter(name=name).first()
        by = os_user()
        if revoke:
            if existing is None:
                raise CommandError(f"No agent {name!r}.")
            existing.revoke_token()
            OperatorAct.record(None, Act.TOKEN_REVOKED, name, by=by)
            self.stdout.write(f"Agent {name!r}: token revoked; its open sockets close now.")
            return
        if existing and not rotate:
            raise CommandError(f"Agent {name!r} exists; use --rotate to issue a new token.")
        if existing:
            token = existing.rotate_token()
            OperatorAct.record(None, Act.TOKEN_ROTATED, name, by=by)
            if scope is not None:
                existing.scope = scope
                existing.save(update_fields=["scope"])
        else:
            try:
                _, token = Agent.create_with_token(name, role=role, scope=scope or "")
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            OperatorAct.record(None, Act.TOKEN_CREATED, name, by=by, scope=scope or "")
        if token_only:
            self.stdout.write(token)
            return
        self.stdout.write(f"Agent {name!r} {'token rotated' if existing else 'created'}.")
        self.stdout.write(f"Token (shown once, keep it secret): {token}")
        self.stdout.write("Connect with:  Authorization: Bearer <token>  to /ws/agent/")
