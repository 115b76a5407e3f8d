"""HTTP API for agents: frames in, context out, traces out, conformance checks.

Agents authenticate with `Authorization: Bearer <token>`, the same token as on the socket.
Errors are `{"error": {"code", "message"}}` with short stable codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from coordination import conformance, events
from coordination.canonical import parse_json
from coordination.conformance import verify_flow
from coordination.ingest import STORAGE_FAILED, ingest
from coordination.models import Agent, Coordination
from coordination.rehydrate import rehydrate
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
            return api_error(
                401,
                "unauthorized",
                "Missing or unknown agent token (Authorization: Bearer <token>).",
                WWW_Authenticate='Bearer realm="ltpdash"',
            )
        request.agent = agent  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


@csrf_exempt
@require_POST
@agent_required
def frames(request: AgentRequest) -> JsonResponse:
    """POST one frame, a list of frames, or a bundle. The answer lists one ack or error frame
    per frame, in order: 200 when at least one was stored, 400 when none was, 503 when none
    was because the database failed (send them again)."""
    # Read at most one byte past the limit: a huge body is refused without being buffered.
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return api_error(413, "body_too_large", f"A request may be at most {MAX_BODY_BYTES} bytes.")
    try:
        data = parse_json(body)
    except (ValueError, UnicodeDecodeError):
        return api_error(400, "malformed_json", "The body is not valid JSON. Nothing was stored.")
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
    with events.collecting():
        outcomes = ingest(request.agent, data, session_id="http")
    replies = [outcome.to_frame() for outcome in outcomes]
    if not outcomes or any(o.error is None for o in outcomes):
        return JsonResponse({"frames": replies}, status=200)
    if any(o.error and o.error.code == STORAGE_FAILED[0] for o in outcomes):
        # Our failure, not the agent's: a 4xx would tell it not to send the frames again.
        return JsonResponse({"frames": replies}, status=503, headers={"Retry-After": "1"})
    return JsonResponse({"frames": replies}, status=400)


def _compact(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


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
