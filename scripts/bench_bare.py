"""The benchmark's reference: a bare Channels app on the same daphne, Channels and Django.

    python -m coordination.serve ... bench_bare:application   (scripts/ on the path)

Its `/ws/agent/` accepts the same client as ltpdash, parses each message with ltpdash's own
parser (bounded depth), expands lists and bundles, validates every envelope with
`coordination.schemas.parse_envelope` (pydantic) and answers each frame with the ack ltpdash
sends (frame id, a seq, a hash, duplicate, warnings) or its error frame. It stores nothing
and checks no token: the ceiling the same stack gives a consumer that does no work of its
own. Run with ltpdash's settings, so the channel layer (in-memory or Redis) is the same too.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltpdash.settings")
django_asgi_app = get_asgi_application()

from channels.consumer import get_handler_name  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from coordination.schemas import (  # noqa: E402
    FrameError,
    Outcome,
    error_frame,
    expand,
    parse_envelope,
    parse_message,
)


class BareAgentConsumer(AsyncWebsocketConsumer):
    """Validate and ack; nothing stored."""

    seq = 0

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The same shortcut ltpdash's consumers take (no hop to the sync thread per message).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else bytes_data or b""
        try:
            data = parse_message(raw)
        except FrameError as exc:
            await self._reply(error_frame(exc.code, exc.message))
            return
        for item in expand(data, "bare"):
            if isinstance(item, dict) and item.get("type") == "ack":
                continue  # an agent's ack of something sent to it: no reply, as in ltpdash
            await self._reply(self._outcome(item).to_frame())

    def _outcome(self, item: Any) -> Outcome:
        try:
            envelope = parse_envelope(item)
        except FrameError as exc:
            return Outcome(frame_id=exc.frame_id, error=exc)
        self.seq += 1
        digest = hashlib.sha256(f"{envelope.id}:{self.seq}".encode()).hexdigest()
        return Outcome(frame_id=envelope.id, seq=self.seq, hash=digest, type=envelope.type)

    async def _reply(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False, separators=(",", ":")))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/agent/", BareAgentConsumer.as_asgi())]),
    }
)
