"""Let an agent speak in a coordination it was neither routed into nor scoped for."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination import decisions
from coordination.management import os_user
from coordination.models import Agent, Coordination


class Command(BaseCommand):
    help = "Admit AGENT as a participant of COORDINATION (recorded in its chain, with who)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("coordination", help="The coordination's id.")
        parser.add_argument("agent", help="The agent's name.")
        parser.add_argument("--by", default="", help="Who admits it (default: the OS user).")

    def handle(self, coordination: str, agent: str, by: str, **options: Any) -> None:
        target = Coordination.objects.filter(key=coordination).first()
        if target is None:
            raise CommandError(f"No coordination {coordination!r}.")
        admitted = Agent.objects.filter(name=agent).first()
        if admitted is None:
            raise CommandError(f"No agent {agent!r}; create it with createagent.")
        by = by or os_user()
        user = get_user_model().objects.filter(username=by).first()
        if decisions.admit(target.pk, admitted, user, by_name=by):
            self.stdout.write(f"{agent} may now speak in {coordination} (admitted by {by}).")
        else:
            self.stdout.write(f"{agent} already is a participant of {coordination}.")
