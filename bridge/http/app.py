"""The bridge's HTTP routes on Starlette.

Why Starlette + uvicorn: one small, established ASGI stack whose WebSocket support, streaming
responses and test client are first class; handlers are plain ``async def`` functions, so the
thin-adapter style of the rest of the bridge (design.md §5) carries over: each handler parses the
request, calls the store or the hub, and formats the answer.  aiohttp would do the same with a
second HTTP client/server stack beside ``websockets``; FastAPI would add pydantic and a framework
layer for a dozen routes whose OpenAPI document is written by hand (``openapi.py``).

Routes (all JSON errors are RFC 9457 problem documents; ``problems.py``)::

    GET  /health, /ready                       no token
    GET  /openapi.json, /metrics               token
    GET  /api/v1/calls                         list/search (status, since, until, q, who, agent)
    POST /api/v1/calls                         a recording as a live call (202 + Location)
    GET  /api/v1/calls/{id}                    the call: legs, segments, words, gaps, events
    GET  /api/v1/calls/{id}/export             json|txt|vtt|srt, streamed
    DELETE /api/v1/calls/{id}                  supervisors only
    POST /api/v1/calls/{id}/pause, /resume     a payment step: nothing transcribed (``pause.py``)
    GET  /api/v1/live/snapshot                 active calls, latest lines, ASR health, seq
    WS   /api/v1/live                          live events (``bridge.live``)
    POST /api/v1/whip, DELETE /api/v1/whip/{s}  WebRTC ingest (WHIP; ``whip.py``)
    GET, POST, DELETE /api/v1/session          who am I, browser login (cookie), logout
    GET  /, /calls/{id}, /history, /login      dashboard pages (static; data needs a token)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from bridge import metrics
from bridge.asr.pool import AsrPool, AsrTarget
from bridge.auth import Principal
from bridge.core.numbers import BadNumber, parse_uint
from bridge.core.types import LegRole
from bridge.errors import BridgeError, MediaError, StorageError
from bridge.export import MEDIA_TYPES, iter_render, to_json
from bridge.health import Health
from bridge.leg import LegSettings
from bridge.live import LiveFilter, LiveHub
from bridge.webrtc.session import WhipSessions, WhipSettings
from storage import TranscriptStore

from .auth import new_call_of
from .live_ws import refuse_handshake, serve_subscription
from .openapi import openapi_document
from .params import int_param, shown, text_param, time_param
from .pause import pause_call, resume_call, visible_transcript
from .problems import HttpProblem, bridge_error, http_exception, problem_handler
from .session import end_session, get_session, page, presented, principal_of, start_session
from .uploads import (
    MULTIPART_SLACK_BYTES,
    UploadLimits,
    UploadRunner,
    declared_length,
    file_name_for,
    is_recording_type,
    parse_title,
    receive_multipart,
    receive_raw,
    too_large,
    unsupported_type,
    user_message,
)
from .whip import whip_routes

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MAX_PAGE = 200


@dataclass(slots=True)
class AppState:
    store: TranscriptStore
    hub: LiveHub
    tokens: dict[str, Principal]
    uploads: UploadRunner
    health: Health
    pool: AsrPool
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[Request], Awaitable[Response]]


def _state(request: Request | WebSocket) -> AppState:
    state: AppState = request.app.state.bridge
    return state


def _principal(request: Request | WebSocket) -> Principal:
    return principal_of(request)


def _supervisor(request: Request) -> Principal:
    principal = _principal(request)
    if not principal.is_supervisor:
        raise HttpProblem(403, "only supervisor tokens may do this", kind="forbidden")
    return principal


def _call_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.call_id,
        "source": record.source.value,
        "title": record.title,
        "agent": record.agent,
        "started_at_ms": record.started_at_ms,
        "ended_at_ms": record.ended_at_ms,
        "end_cause": record.end_cause,
        "duration_ms": record.duration_ms,
        "leg_count": record.leg_count,
        "active": record.active,
        "links": {
            "self": f"/api/v1/calls/{record.call_id}",
            "view": f"/calls/{record.call_id}",
        },
    }


async def _visible_transcript(request: Request, call_id: str) -> Any:
    return await visible_transcript(request, _state(request).store, call_id)


# -- handlers -------------------------------------------------------------------------------------


async def health_endpoint(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    state = _state(request)
    if state.stopping.is_set():
        raise HttpProblem(503, "the bridge is stopping", kind="not-ready")
    try:
        await state.store.list_calls(limit=1)
    except StorageError as exc:
        detail = f"the transcript store is not readable: {exc}"
        raise HttpProblem(503, detail, kind="not-ready") from None
    problems = state.health.problems()
    if problems:  # e.g. a SIP worker that keeps crashing: SIP cannot take calls
        raise HttpProblem(503, "; ".join(problems), kind="not-ready")
    return JSONResponse({"status": "ready", "store_backlog": state.store.backlog})


async def openapi(request: Request) -> Response:
    _principal(request)
    return JSONResponse(openapi_document())


async def metrics_endpoint(request: Request) -> Response:
    _principal(request)
    registry = request.app.state.registry
    return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)


async def asr_backends(request: Request) -> Response:
    """The ASR servers of the pool: health, legs and budget (supervisors)."""
    _supervisor(request)
    pool = _state(request).pool
    return JSONResponse({"backends": [b.describe() for b in pool.backends]})


async def list_calls(request: Request) -> Response:
    principal = _principal(request)
    store = _state(request).store
    status = request.query_params.get("status", "all")
    if status not in ("all", "active", "ended"):
        raise HttpProblem(
            400, f"query status={status!r}: expected all, active or ended", kind="bad-query"
        )
    limit = int_param(request, "limit", 50, 1, MAX_PAGE)
    offset = int_param(request, "offset", 0, 0, 10**9)
    agent = text_param(request, "agent")
    if not principal.is_supervisor:
        if agent is not None and agent != principal.agent:
            raise HttpProblem(403, "agents may list only their own calls", kind="forbidden")
        agent = principal.agent
    page = await store.search_calls(
        active=None if status == "all" else status == "active",
        since_ms=time_param(request, "since"),
        until_ms=time_param(request, "until"),
        text=text_param(request, "q"),
        who=text_param(request, "who"),
        agent=agent,
        limit=limit,
        offset=offset,
    )
    next_link = None
    if offset + len(page.calls) < page.total:
        query = {k: v for k, v in request.query_params.items() if k not in ("offset", "token")}
        query["offset"] = str(offset + len(page.calls))
        next_link = f"/api/v1/calls?{urlencode(query)}"
    return JSONResponse(
        {
            "calls": [_call_json(r) for r in page.calls],
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "next": next_link,
        }
    )


async def get_call(request: Request) -> Response:
    transcript = await _visible_transcript(request, request.path_params["call_id"])
    document = json.loads(to_json(transcript))
    document["call"]["agent"] = transcript.call.agent
    document["call"]["active"] = transcript.call.active
    return JSONResponse(document)


async def export_call(request: Request) -> Response:
    call_id = request.path_params["call_id"]
    transcript = await _visible_transcript(request, call_id)
    fmt = request.query_params.get("format", "json")
    if fmt not in MEDIA_TYPES:
        raise HttpProblem(
            400,
            f"query format={shown(fmt)}: expected one of {', '.join(MEDIA_TYPES)}",
            kind="bad-query",
        )
    leg = text_param(request, "leg", max_chars=200)
    try:
        chunks = iter_render(transcript, fmt, leg=leg)
    except ValueError as exc:
        raise HttpProblem(400, str(exc), kind="bad-query") from None
    suffix = "" if leg is None else "-" + quote(leg, safe="")
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in chunks),
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="call-{call_id[:12]}{suffix}.{fmt}"'
        },
    )


async def delete_call(request: Request) -> Response:
    """Delete an ended call; an upload still queued or running is cancelled instead (its call
    ends ``cancelled`` with the finals so far: 200 with the call, 202 while its legs finish)."""
    _supervisor(request)
    call_id = request.path_params["call_id"]
    state = _state(request)
    if state.uploads.owns(call_id):
        ended = await state.uploads.cancel(call_id)
        transcript = await state.store.get_call(call_id)
        if not ended or transcript is None:
            location = f"/api/v1/calls/{call_id}"
            return JSONResponse(
                {"id": call_id, "status": "cancelling", "links": {"self": location}},
                status_code=202,
            )
        return JSONResponse({**_call_json(transcript.call), "status": "cancelled"})
    record = await state.store.get_call(call_id)
    if record is None:
        raise HttpProblem(404, f"no call {call_id!r}", kind="not-found")
    if record.call.active:
        raise HttpProblem(
            409, f"call {call_id!r} is still active; delete it after it ends", kind="conflict"
        )
    await state.store.delete_call(call_id)
    return Response(status_code=204)


async def post_call(request: Request) -> Response:
    """An uploaded recording as a call: streamed to disk, queued for spare ASR capacity."""
    principal = _principal(request)
    credentials = presented(request)
    token = "" if credentials is None else credentials.token
    state = _state(request)
    call = new_call_of(
        principal,
        agent=request.query_params.get("agent") or None,
        roles=request.query_params.get("roles"),
        default_roles=(LegRole.CALLER, LegRole.AGENT),  # a stereo recording: left, right
    )
    agent, roles = call.agent, call.roles
    pace = request.query_params.get("pace", "realtime")
    if pace not in ("realtime", "fast"):
        raise HttpProblem(400, f"query pace={pace!r}: expected realtime or fast", kind="bad-query")
    title = parse_title(request.query_params.get("title"))
    limit = state.uploads.limits.max_bytes
    content_type = request.headers.get("content-type", "")
    multipart = content_type.startswith("multipart/form-data")
    if not multipart and not is_recording_type(content_type):
        raise unsupported_type(content_type)
    declared = declared_length(request)
    if declared is not None and declared > limit + (MULTIPART_SLACK_BYTES if multipart else 0):
        raise too_large(limit)
    async with state.uploads.receiving_slot(token) as folder:
        if multipart:
            path = folder / "body"
            size, file_name = await receive_multipart(request, path, limit)
            if file_name is not None:
                title = parse_title(file_name)
            path = path.rename(folder / file_name_for(title))
        else:
            path = folder / file_name_for(title)
            size = await receive_raw(request, path, limit)
        if not size:
            raise HttpProblem(400, "the request body is empty: send a recording")
        try:
            accepted = await state.uploads.submit(
                path, token=token, title=title, fast=pace == "fast", roles=roles, agent=agent
            )
        except MediaError as exc:
            raise HttpProblem(422, user_message(exc, path, title), kind="bad-audio") from None
    location = f"/api/v1/calls/{accepted.call_id}"
    return JSONResponse(
        {
            "id": accepted.call_id,
            "status": accepted.state,
            "queue_position": accepted.queue_position,
            "links": {"self": location, "view": f"/calls/{accepted.call_id}"},
        },
        status_code=202,
        headers={"Location": location},
    )


def _live_filter(conn: Request | WebSocket, principal: Principal) -> LiveFilter:
    params = conn.query_params
    call_id = params.get("call") or None
    agent = params.get("agent") or None
    if not principal.is_supervisor:
        if agent is not None and agent != principal.agent:
            raise HttpProblem(403, "agents may follow only their own calls", kind="forbidden")
        if call_id is not None:
            owner = _state(conn).hub.agent_of(call_id)
            if owner is not None and owner != principal.agent:
                raise HttpProblem(403, f"call {call_id!r} belongs to another agent")
        agent = principal.agent
    return LiveFilter(call_id=call_id, agent=agent)


async def live_snapshot(request: Request) -> Response:
    principal = _principal(request)
    return JSONResponse(_state(request).hub.snapshot(_live_filter(request, principal)))


async def live_socket(websocket: WebSocket) -> None:
    state = _state(websocket)
    try:
        principal = _principal(websocket)
        live_filter = _live_filter(websocket, principal)
        raw = websocket.query_params.get("resume_from")
        resume_from = None
        if raw:
            try:
                resume_from = parse_uint(raw, what="query resume_from", max_digits=18)
            except BadNumber as exc:
                detail = f"{exc}: expected a sequence number"
                raise HttpProblem(400, detail, kind="bad-query") from None
    except HttpProblem as problem:
        await refuse_handshake(websocket, problem.status, problem.detail)
        return
    await serve_subscription(websocket, state.hub, live_filter, resume_from, state.stopping)


def _page(name: str) -> Handler:
    return page(lambda _principal: WEB_DIR / name)


def _home(principal: Principal | None) -> Path:
    """``/``: the supervisors' table; an agent's own live call for an agent."""
    if principal is not None and not principal.is_supervisor:
        return WEB_DIR / "agent.html"
    return WEB_DIR / "supervisor.html"


def create_app(
    *,
    store: TranscriptStore,
    hub: LiveHub,
    endpoint: AsrTarget,
    tokens: dict[str, Principal],
    settings: LegSettings | None = None,
    on_call_ended: Callable[[str], None] | None = None,
    max_uploads: int = 8,
    whip: WhipSettings | None = None,
    upload_limits: UploadLimits | None = None,
    upload_dir: Path | None = None,
    health: Health | None = None,
) -> Starlette:
    """The ASGI app.  The caller owns ``store`` and ``hub``; :func:`close_app` stops uploads.

    Uploads are kept under ``upload_dir`` (default: ``uploads/`` beside the store's file), where
    the files a killed process left are removed now.
    """
    uploads = UploadRunner(
        store=store,
        hub=hub,
        endpoint=endpoint,
        settings=settings or LegSettings(),
        directory=upload_dir or store.path.parent / "uploads",
        limits=upload_limits or UploadLimits(max_running=max_uploads),
        on_call_ended=on_call_ended,
    )
    routes = [
        Route("/health", health_endpoint),
        Route("/ready", ready),
        Route("/openapi.json", openapi),
        Route("/metrics", metrics_endpoint),
        Route("/api/v1/calls", list_calls, methods=["GET"]),
        Route("/api/v1/calls", post_call, methods=["POST"]),
        Route("/api/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/api/v1/calls/{call_id}", delete_call, methods=["DELETE"]),
        Route("/api/v1/calls/{call_id}/export", export_call, methods=["GET"]),
        Route("/api/v1/calls/{call_id}/pause", pause_call, methods=["POST"]),
        Route("/api/v1/calls/{call_id}/resume", resume_call, methods=["POST"]),
        Route("/api/v1/live/snapshot", live_snapshot),
        Route("/api/v1/asr/backends", asr_backends, methods=["GET"]),
        WebSocketRoute("/api/v1/live", live_socket),
        Route("/api/v1/session", get_session, methods=["GET"]),
        Route("/api/v1/session", start_session, methods=["POST"]),
        Route("/api/v1/session", end_session, methods=["DELETE"]),
        Route("/", page(_home)),
        Route("/calls/{call_id}", _page("agent.html")),
        Route("/history", _page("history.html")),
        Route("/login", _page("login.html")),
        *whip_routes(),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HttpProblem: problem_handler,
            HTTPException: http_exception,
            BridgeError: bridge_error,
        },
    )
    pool = AsrPool.of(endpoint)
    app.state.bridge = AppState(
        store=store,
        hub=hub,
        tokens=dict(tokens),
        uploads=uploads,
        health=health or Health(),
        pool=pool,
    )
    app.state.whip = WhipSessions(
        store=store,
        hub=hub,
        endpoint=endpoint,
        leg_settings=settings or LegSettings(),
        settings=whip,
        on_call_ended=on_call_ended,
    )
    app.state.registry = metrics.make_registry(
        hub, store, lambda: uploads.running, app.state.bridge.health, pool
    )
    app.state.started_at = time.time()
    return app


async def close_app(app: Starlette) -> None:
    """Tell live clients the bridge stops, cancel uploads (their calls end as interrupted)."""
    state: AppState = app.state.bridge
    state.stopping.set()
    await state.uploads.close()
    await app.state.whip.close_all()
