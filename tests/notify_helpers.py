"""Real receivers on loopback for the notification tests: an SMTP server (aiosmtpd) and an
HTTP server in a thread that answers with scripted statuses and records what it got."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from coordination.processes import free_port

SECRET = "test-webhook-secret"


@dataclass
class Received:
    headers: Message  # case-insensitive, as HTTP headers are
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> dict:
        return json.loads(self.body)


class HttpReceiver:
    """Answers each POST with the next scripted status (then `then`), recording every one."""

    def __init__(self, statuses: list[int] | None = None, then: int = 204):
        self.statuses, self.then = list(statuses or []), then
        self.requests: list[Received] = []  # every request, answered 2xx or not
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.then
                    receiver.requests.append(Received(self.headers, body, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, name: str | None = None) -> list[dict]:
        """Bodies of the requests that arrived, parsed, optionally of one event kind."""
        with self.lock:
            bodies = [r.json() for r in self.requests]
        return [b for b in bodies if name is None or b.get("event") == name]

    def wait_for(self, name: str, timeout: float = 20, count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [r for r in self.requests if r.json().get("event") == name]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no {name} within {timeout}s; got {self.events()}")


def verify(received: Received, secret: str = SECRET, tolerance: int = 300) -> dict:
    """The README's receiver check, verbatim in spirit: signature over timestamp.body."""
    timestamp = received.headers["X-Ltpdash-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(received.headers["X-Ltpdash-Signature"], "sha256=" + expected)
    assert abs(time.time() - int(timestamp)) < tolerance
    return json.loads(received.body)


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]

    def wait_for(self, address: str, timeout: float = 20) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no mail to {address} within {timeout}s")


class SmtpServer:
    """aiosmtpd on a free loopback port, in its own thread."""

    def __init__(self):
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def closed_port_url() -> str:
    """A URL nobody listens on: the receiver that is down for the whole test."""
    return f"http://127.0.0.1:{free_port()}/hook"
