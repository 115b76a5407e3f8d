"""Starting daphne as a child process: shared by `manage.py demo`, the benchmark and the
end-to-end tests, so they all serve the project the same way."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

ASGI_APPLICATION = "ltpdash.asgi:application"
# Seconds a websocket has to complete its handshake (daphne's default is 20).
HANDSHAKE_TIMEOUT = 10
# Seconds an HTTP request may take once handed to ltpdash (daphne's default is none).
HTTP_TIMEOUT = 60


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def daphne_command(host: str, port: int, access_log: bool = True) -> list[str]:
    verbosity = [] if access_log else ["-v", "0"]
    return [
        sys.executable,
        "-m",
        "coordination.serve",  # daphne, plus an idle timeout on HTTP connections
        *verbosity,
        # A websocket must finish its handshake, and a request its answer, in bounded time.
        "--websocket_connect_timeout",
        str(HANDSHAKE_TIMEOUT),
        "--http-timeout",
        str(HTTP_TIMEOUT),
        "-b",
        host,
        "-p",
        str(port),
        ASGI_APPLICATION,
    ]


def wait_until_serving(
    host: str, port: int, process: subprocess.Popen, timeout: float = 30.0
) -> None:
    """Return once `process` accepts connections on host:port; raise RuntimeError if it
    exits or does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode} during start-up")
        if port_in_use(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not accept connections on {host}:{port} within {timeout} s")


def repeat(
    interval: float,
    one_pass: Callable[[], Iterable[str]],
    write: Callable[[str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run `one_pass` every `interval` seconds until `should_stop()`, writing its lines: the
    loop of the sweeper and of `manage.py notify`."""
    from django.db import DatabaseError, close_old_connections, connections

    while not should_stop():
        started = time.monotonic()
        # A long-lived process: drop connections the database closed meanwhile.
        close_old_connections()
        try:
            for line in one_pass():
                write(line)
        except DatabaseError as exc:
            # A restart or failover of the database: whatever was claimed rolled back with
            # it, so the next pass simply finds it again.
            write(f"database error, retrying: {exc}")
            connections.close_all()
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
