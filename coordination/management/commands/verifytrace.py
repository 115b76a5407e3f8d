"""Verify an exported audit trace offline: ``manage.py verifytrace FILE``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.trace import verify_trace


class Command(BaseCommand):
    help = "Check an audit trace's hash chain (FILE, or - for stdin). Exit 1 if it is broken."
    # An offline check of a file: it must work even where the project's own
    # checks (database, URLs) would fail, e.g. on an auditor's machine.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON Lines audit trace, or - to read stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        if path == "-":
            verdict = verify_trace(sys.stdin)
        else:
            try:
                # utf-8-sig: a trace saved by an editor may start with a BOM.
                with open(path, encoding="utf-8-sig") as handle:
                    verdict = verify_trace(handle)
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                raise CommandError(f"{path} is not UTF-8 text") from exc

        if verdict.ok:
            self.stdout.write(f"verified ({verdict.entries} entries)")
            return
        if verdict.broken_at is None:
            self.stdout.write(f"not verified: {verdict.why}")
        else:
            self.stdout.write(f"broken at entry {verdict.broken_at}: {verdict.why}")
        # Not CommandError: the verdict is the output, on stdout, as written.
        raise SystemExit(1)
