"""HTTP API for agents: frames in, context out, traces out, conformance checks.

Agents authenticate with `Authorization: Bearer <token>`, the same token as on the socket.
Errors are `{"error": {"code", "message"}}` with short stable codes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from coordination import conformance, limits
from coordination.conformance import verify_flow
from coordination.ingest import STORAGE_FAILED
from coordination.intake import RATE_LIMITED, frames_of, take_in, too_fast
from coordination.models import Agent, Coordination
from coordination.rehydrate import rehydrate
from coordination.schemas import FrameError, parse_message
from coordination.trace import trace_response

# A request may carry many frames; each is still held to LTP_MAX_FRAME_BYTES on its own.
MAX_BODY_BYTES = 2 * 1024 * 1024


class AgentRequest(HttpRequest):
    """A request that `agent_required` authenticated: `agent` is who sent it."""

    agent: Agent


def api_error(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def agent_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        agent = Agent.from_authorization(request.headers.get("Authorization"))
        if agent is None:
            return _unauthorized()
        request.agent = agent  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


@csrf_exempt
@require_POST
async def frames(request: HttpRequest) -> JsonResponse:
    """POST one frame, a list of frames, or a bundle. The answer lists one ack or error frame
    per frame, in order, and nothing is stored that is not acknowledged in it: 200 when at
    least one was stored, 429 + Retry-After when none because of the agent's budget, 503 when
    none because the database failed (send them again), 400 when none could be."""
    agent = await sync_to_async(Agent.from_authorization)(request.headers.get("Authorization"))
    if agent is None:
        return _unauthorized()
    if limits.exhausted(agent.pk):
        # Over budget already: refused before the body is even parsed (cheap for a flooder).
        return api_error(
            429, RATE_LIMITED, too_fast(), Retry_After=str(limits.retry_after(agent.pk))
        )
    # Read at most one byte past the limit: a huge body is refused without being buffered.
    # Parsing a big body is CPU work: off the event loop (not in the ORM's thread either).
    refused = await asyncio.to_thread(_refuse_body, request.read(MAX_BODY_BYTES + 1))
    if isinstance(refused, JsonResponse):
        return refused
    items = frames_of(agent, refused)
    replies: list[dict[str, Any]] = []
    stored = rate_limited = storage_failed = 0
    async for chunk in take_in(agent, items, "http", in_request=True):
        replies.extend(chunk.replies)
        rate_limited += chunk.rate_limited
        stored += sum(1 for o in chunk.outcomes if o.error is None)
        storage_failed += sum(
            1 for o in chunk.outcomes if o.error and o.error.code == STORAGE_FAILED[0]
        )
    headers = {"Retry-After": str(limits.retry_after(agent.pk))} if rate_limited else {}
    if rate_limited:
        await asyncio.sleep(limits.pause(rate_limited))  # backpressure, as on the socket
    if stored or not replies:
        status = 200
    elif rate_limited:
        status = 429
    elif storage_failed:
        # Our failure, not the agent's: a 4xx would tell it not to send the frames again.
        status, headers = 503, {"Retry-After": "1"}
    else:
        status = 400
    return await asyncio.to_thread(
        JsonResponse, {"frames": replies}, status=status, headers=headers
    )


def _refuse_body(body: bytes) -> JsonResponse | Any:
    """The body's JSON, or the response refusing the whole request."""
    if len(body) > MAX_BODY_BYTES:
        return api_error(413, "body_too_large", f"A request may be at most {MAX_BODY_BYTES} bytes.")
    try:
        data = parse_message(body)
    except FrameError as exc:
        return api_error(400, exc.code, exc.message)
    if data == [] or data == {}:
        return api_error(400, "empty_message", "The body holds no frame.")
    items = data if isinstance(data, list) else [data]
    if len(items) > settings.LTP_MAX_FRAMES_PER_REQUEST:
        return api_error(
            413,
            "too_many_frames",
            f"At most {settings.LTP_MAX_FRAMES_PER_REQUEST} frames per request.",
        )
    limit = settings.LTP_MAX_FRAME_BYTES
    too_large = (
        len(body) > limit
        if not isinstance(data, list)
        else any(len(_compact(item)) > limit for item in items)
    )
    if too_large:
        return api_error(
            413,
            "frame_too_large",
            f"A frame may be at most {limit} bytes. Nothing was stored.",
        )
    return data


def _unauthorized() -> JsonResponse:
    return api_error(
        401,
        "unauthorized",
        "Missing or unknown agent token (Authorization: Bearer <token>).",
        WWW_Authenticate='Bearer realm="ltpdash"',
    )


def _compact(item: Any) -> bytes:
    text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def participant_required(
    view: Callable[[AgentRequest, Coordination], HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """The view gets the coordination `key` if the agent takes part in it; otherwise 404, the
    same answer as for one that does not exist, so an outsider learns nothing about it."""

    @wraps(view)
    def wrapper(request: AgentRequest, key: str) -> HttpResponseBase:
        coordination = Coordination.objects.filter(key=key).first()
        if coordination is None or not coordination.has_participant(request.agent):
            return api_error(
                404, "not_found", "No coordination with this id that you take part in."
            )
        return view(request, coordination)

    return wrapper


@require_GET
@agent_required
@participant_required
def context(request: AgentRequest, coordination: Coordination) -> JsonResponse:
    return JsonResponse(rehydrate(coordination))


@require_GET
@agent_required
@participant_required
def trace(request: AgentRequest, coordination: Coordination) -> HttpResponseBase:
    return trace_response(coordination.key, coordination.trace_lines())


@csrf_exempt
@require_POST
def conformance_verify(request: HttpRequest) -> JsonResponse:
    """PROTOCOL §7. Open to anyone: it stores nothing and only judges the body."""
    status, verdict = verify_flow(request.read(conformance.MAX_BODY_BYTES + 1))
    return JsonResponse(verdict, status=status)
