"""`python -m coordination.serve [daphne options]`: daphne, with an idle timeout on HTTP
connections that have not finished a request.

Twisted keeps a connection that sends nothing (or half its headers and then nothing) for 12
hours; 300 such connections hold 300 sockets. daphne has no option for it, so this sets the
factory's `timeOut` (reset by every byte received) before handing over to daphne's own
command line. Requests handed to the application are bounded by daphne's `--http-timeout`,
websocket handshakes by `--websocket_connect_timeout` (both set by processes.py).
"""

from __future__ import annotations

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


def main(argv: list[str]) -> None:
    server.HTTPFactory = IdleTimeoutHTTPFactory
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
