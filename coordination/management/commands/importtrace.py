"""Import a trace recorded elsewhere: ``manage.py importtrace FILE``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordination.importer import ImportRefused, import_trace


class Command(BaseCommand):
    help = (
        "Import an LTP audit trace (JSON Lines with prev_hash/hash) or raw frames JSONL into a "
        "read-only coordination. Prints the integrity verdict and the coordination's console "
        "path. A file with a line that is not JSON or not a frame is refused whole (exit 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the trace file")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            # utf-8-sig: a trace saved by an editor may start with a BOM.
            with open(path, encoding="utf-8-sig") as handle:
                imported = import_trace(handle, filename=path)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text; nothing imported") from exc
        except ImportRefused as refused:
            raise CommandError(
                f"{path} refused, nothing imported: line {refused.line}: {refused.why}"
            ) from refused
        self.stdout.write(imported.verdict.text)
        self.stdout.write(imported.path)
