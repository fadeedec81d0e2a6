"""WHIP (RFC 9725) ingest routes: a browser or encoder sends its microphone as a call.

::

    OPTIONS /api/v1/whip[/{session}]   CORS preflight (RFC 9725 §4.9), no token
    POST    /api/v1/whip               application/sdp offer -> 201, SDP answer, Location, ETag
    DELETE  /api/v1/whip/{session}     end the session: legs finalise, call ends "whip-delete"
    GET     /softphone                 the bridge's own WHIP client page

Query of the POST: ``agent`` (supervisor tokens only; an agent token owns its calls), ``call``
(the call's title), ``roles=agent,customer`` (one per audio track, in offer order).  Errors are
problem+json: 401 token, 403 another agent, 415 not ``application/sdp``, 400 malformed SDP,
406 no usable audio (the detail says what was offered and what is accepted), 503 + Retry-After
over ``max_sessions``.  Trickle ICE and ICE restarts (PATCH) are not supported: 405.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.core.types import LegRole
from bridge.errors import ConfigError
from bridge.transcribe import parse_roles
from bridge.webrtc.offer import MAX_SDP_BYTES, OfferRejected, check_offer
from bridge.webrtc.session import WhipSessions

from .auth import Principal, authenticate, bearer_token
from .problems import HttpProblem

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WHIP_PATH = "/api/v1/whip"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Bridge-Call-Id",
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "600",
    "Accept-Post": "application/sdp",
}
RETRY_AFTER_S = 10

Handler = Callable[[Request], Awaitable[Response]]


def _sessions(request: Request) -> WhipSessions:
    sessions: WhipSessions = request.app.state.whip
    return sessions


def _principal(request: Request) -> Principal:
    token = bearer_token(request.headers, request.query_params)
    principal = authenticate(request.app.state.bridge.tokens, token)
    if principal is None:
        detail = (
            "WHIP needs an API token: send 'Authorization: Bearer TOKEN' (tokens are configured "
            "in BRIDGE_API_TOKENS)"
            if token is None
            else "the API token is not valid: check it against BRIDGE_API_TOKENS"
        )
        raise HttpProblem(
            401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="bridge"'}
        )
    return principal


def _cors(handler: Handler) -> Handler:
    """Every WHIP answer, errors included, may be read by a page of another origin."""

    async def wrapped(request: Request) -> Response:
        try:
            response = await handler(request)
        except HttpProblem as problem:
            problem.headers.update(CORS)
            raise
        response.headers.update(CORS)
        return response

    return wrapped


async def preflight(request: Request) -> Response:
    return Response(status_code=204, headers=PREFLIGHT)


async def post_offer(request: Request) -> Response:
    principal = _principal(request)
    sessions = _sessions(request)
    agent = request.query_params.get("agent") or None
    if not principal.is_supervisor:
        if agent is not None and agent != principal.agent:
            raise HttpProblem(403, "agents may start calls only for themselves", kind="forbidden")
        agent = principal.agent
    roles: tuple[LegRole, ...] | None = None
    if request.query_params.get("roles"):
        try:
            roles = parse_roles(request.query_params["roles"])
        except ConfigError as exc:
            detail = str(exc).replace("--roles", "query roles")
            raise HttpProblem(400, detail, kind="bad-query") from None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise HttpProblem(
            415,
            f"Content-Type {content_type or 'missing'}: a WHIP offer is application/sdp "
            "(RFC 9725 §4.2)",
            kind="unsupported-media",
            headers={"Accept-Post": "application/sdp"},
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise HttpProblem(413, f"SDP offers are limited to {MAX_SDP_BYTES} bytes")
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpProblem(400, "the offer is not UTF-8 text", kind="bad-sdp") from None
    max_tracks = len(roles or sessions.settings.roles)
    try:
        offer = check_offer(sdp, max_tracks=max_tracks)
    except OfferRejected as exc:
        status = exc.status_hint or 400
        kind = "bad-sdp" if status == 400 else "no-usable-audio"
        raise HttpProblem(status, str(exc), kind=kind) from None
    if sessions.full:
        raise HttpProblem(
            503,
            f"the bridge takes at most {sessions.settings.max_sessions} WebRTC sessions at once; "
            f"retry in {RETRY_AFTER_S} s",
            kind="busy",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    title = request.query_params.get("call") or ""
    try:
        session = await sessions.open(sdp, offer, agent=agent, title=title, roles=roles)
    except ValueError as exc:  # aiortc refuses what check_offer let through
        raise HttpProblem(400, f"the offer cannot be answered: {exc}", kind="bad-sdp") from None
    location = f"{WHIP_PATH}/{session.session_id}"
    return Response(
        session.answer_sdp,
        status_code=201,
        media_type="application/sdp",
        headers={
            "Location": location,
            "ETag": f'"{session.session_id}"',
            "Bridge-Call-Id": session.call_id,
            "Link": f'</api/v1/calls/{session.call_id}>; rel="related"',
        },
    )


async def delete_session(request: Request) -> Response:
    principal = _principal(request)
    session_id = request.path_params["session_id"]
    session = _sessions(request).get(session_id)
    if session is None:
        raise HttpProblem(404, f"no WHIP session {session_id!r} (ended already?)", kind="not-found")
    if not principal.can_see(session.tee.agent):
        raise HttpProblem(403, "this WHIP session belongs to another agent", kind="forbidden")
    await session.close("whip-delete")
    return Response(status_code=200)


async def softphone(request: Request) -> Response:
    return FileResponse(WEB_DIR / "softphone.html", headers={"Cache-Control": "no-cache"})


def whip_routes() -> list[BaseRoute]:
    """The routes to mount in :func:`bridge.http.app.create_app`."""
    return [
        Route(WHIP_PATH, _cors(post_offer), methods=["POST"]),
        Route(WHIP_PATH, preflight, methods=["OPTIONS"]),
        Route(WHIP_PATH + "/{session_id}", _cors(delete_session), methods=["DELETE"]),
        Route(WHIP_PATH + "/{session_id}", preflight, methods=["OPTIONS"]),
        Route("/softphone", softphone),
    ]
