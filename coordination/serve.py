"""`python -m coordination.serve [daphne options]`: daphne, with an idle timeout on HTTP
connections that have not finished a request.

Twisted keeps a connection that sends nothing (or half its headers and then nothing) for 12
hours; 300 such connections hold 300 sockets. daphne has no option for it, so this sets the
factory's `timeOut` (reset by every byte received) before handing over to daphne's own
command line. Requests handed to the application are bounded by daphne's `--http-timeout`,
websocket handshakes by `--websocket_connect_timeout` (both set by processes.py).

Before serving, what the process has loaded is frozen out of the garbage collector's view
(`settle_heap`).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from daphne import server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory

# Seconds an HTTP connection may stay silent before it is closed.
IDLE_TIMEOUT = float(os.environ.get("LTPDASH_HTTP_IDLE_TIMEOUT", "20"))


class IdleTimeoutHTTPFactory(HTTPFactory):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeOut = IDLE_TIMEOUT


# What live pages render on every update: compiled before the heap is frozen.
LIVE_TEMPLATES = (
    "coordination/coordination_detail.html",
    "coordination/coordination_list.html",
    "coordination/escalation_card.html",
    "coordination/base.html",
)


def settle_heap() -> int:
    """Load the application and the live pages' templates, then move everything loaded so far
    to the collector's permanent generation (`gc.freeze`); how many objects that was.

    Django's, Twisted's and the app's modules are some 120,000 objects that are never garbage,
    yet every full collection walked them: 90-300 ms each on today's 2-core machine, several a
    minute under load, each a pause for every socket of the process (scripts/bench.sh, one run
    each way: the full collections' time 4.4 s -> 1.8 s, the longest during light load about
    100 ms -> 20 ms). Objects made later are collected as before."""
    from django.template.loader import get_template

    import ltpdash.asgi  # noqa: F401  (django.setup(), the URL conf, the consumers)

    for name in LIVE_TEMPLATES:
        get_template(name)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str]) -> None:
    settle_heap()
    server.HTTPFactory = IdleTimeoutHTTPFactory
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
