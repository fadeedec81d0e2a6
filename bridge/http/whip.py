"""WHIP (RFC 9725) ingest routes: a browser or encoder sends its microphone as a call.

::

    OPTIONS /api/v1/whip[/{session}]   CORS preflight, Accept-Post/Accept-Patch (RFC 9725 §4.2)
    POST    /api/v1/whip               application/sdp offer -> 201, SDP answer, Location, ETag
    PATCH   /api/v1/whip/{session}     trickle ICE: application/trickle-ice-sdpfrag -> 204
    DELETE  /api/v1/whip/{session}     end the session: legs finalise, call ends "whip-delete"
    GET     /softphone                 the bridge's own WHIP client page

Query of the POST: ``agent`` (supervisor tokens only; an agent token owns its calls), ``call``
(the call's title), ``roles=agent,customer`` (one per audio track, in offer order).  Errors are
problem+json: 401 token, 403 another agent, 415 not ``application/sdp``, 400 malformed SDP,
406 no usable audio (the detail says what was offered and what is accepted), 503 + Retry-After
over ``max_sessions``.

PATCH (RFC 9725 §4.3, checked by :mod:`bridge.webrtc.trickle`): 204 without a body or ETag once
the candidates are handed to aiortc; 415 not ``application/trickle-ice-sdpfrag`` (with
Accept-Patch), 428 no ``If-Match``, 412 ``If-Match`` is not the ETag of the 201, 400 malformed
fragment, 422 an ICE restart (new ice-ufrag/ice-pwd: not supported, the session goes on), 404 no
such session.  ``If-Match`` on DELETE is ignored (RFC 9725 §4.3.1).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridge.auth import Principal
from bridge.leg import capacity_problem
from bridge.webrtc import trickle
from bridge.webrtc.offer import MAX_SDP_BYTES, OfferRejected, check_offer
from bridge.webrtc.session import WhipSession, WhipSessions

from .auth import new_call_of
from .problems import HttpProblem
from .session import principal_of, static_page

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WHIP_PATH = "/api/v1/whip"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Bridge-Call-Id",
}
# RFC 9725 §4.2: the answer to OPTIONS "SHOULD include an Accept-Post header"; RFC 5789 §3.1:
# a resource that takes PATCH says which patch formats in Accept-Patch.
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "600",
    "Accept-Post": "application/sdp",
}
SESSION_PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "600",
    "Accept-Patch": trickle.MEDIA_TYPE,
}
RETRY_AFTER_S = 10
PATCH_KINDS = {  # problem type per status of a refused PATCH
    400: "bad-sdpfrag",
    412: "precondition-failed",
    422: "ice-restart-unsupported",
    428: "precondition-required",
}

Handler = Callable[[Request], Awaitable[Response]]


def _sessions(request: Request) -> WhipSessions:
    sessions: WhipSessions = request.app.state.whip
    return sessions


def _principal(request: Request) -> Principal:
    return principal_of(request, what="WHIP")


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
    return Response(status_code=200, headers=PREFLIGHT)


async def session_preflight(request: Request) -> Response:
    return Response(status_code=200, headers=SESSION_PREFLIGHT)


async def post_offer(request: Request) -> Response:
    principal = _principal(request)
    sessions = _sessions(request)
    call = new_call_of(
        principal,
        agent=request.query_params.get("agent") or None,
        roles=request.query_params.get("roles") or None,
        default_roles=sessions.settings.roles,
    )
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
    max_tracks = len(call.roles)
    try:
        offer = check_offer(sdp, max_tracks=max_tracks)
    except OfferRejected as exc:
        status = exc.status_hint or 400
        kind = "bad-sdp" if status == 400 else "no-usable-audio"
        raise HttpProblem(status, str(exc), kind=kind) from None
    busy: str | None
    if sessions.full:
        busy = f"the bridge takes at most {sessions.settings.max_sessions} WebRTC sessions at once"
    else:
        busy = capacity_problem(sessions.endpoint)
    if busy is not None:
        raise HttpProblem(
            503,
            f"{busy}; retry in {RETRY_AFTER_S} s",
            kind="busy",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    title = request.query_params.get("call") or ""
    try:
        session = await sessions.open(sdp, offer, agent=call.agent, title=title, roles=call.roles)
    except ValueError as exc:  # aiortc refuses what check_offer let through
        raise HttpProblem(400, f"the offer cannot be answered: {exc}", kind="bad-sdp") from None
    location = f"{WHIP_PATH}/{session.session_id}"
    return Response(
        session.answer_sdp,
        status_code=201,
        media_type="application/sdp",
        headers={
            "Location": location,
            "ETag": session.etag,
            "Bridge-Call-Id": session.call_id,
            "Link": f'</api/v1/calls/{session.call_id}>; rel="related"',
        },
    )


def _session(request: Request) -> WhipSession:
    """The session the URL names, if it is still running and the token may touch it."""
    principal = _principal(request)
    session_id = request.path_params["session_id"]
    session = _sessions(request).get(session_id)
    if session is None or session.cause is not None:
        raise HttpProblem(404, f"no WHIP session {session_id!r} (ended already?)", kind="not-found")
    if not principal.can_see(session.tee.agent):
        raise HttpProblem(403, "this WHIP session belongs to another agent", kind="forbidden")
    return session


async def patch_session(request: Request) -> Response:
    """Trickle ICE (RFC 9725 §4.3.2): the client's later candidates for this ICE session."""
    session = _session(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != trickle.MEDIA_TYPE:
        # RFC 5789 §2.2: an unsupported patch document is 415, with the formats in Accept-Patch.
        raise HttpProblem(
            415,
            f"Content-Type {content_type or 'missing'}: a WHIP PATCH carries {trickle.MEDIA_TYPE} "
            "(RFC 9725 §4.3.1)",
            kind="unsupported-media",
            headers={"Accept-Patch": trickle.MEDIA_TYPE},
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > trickle.MAX_FRAGMENT_BYTES:
            raise HttpProblem(
                413, f"SDP fragments are limited to {trickle.MAX_FRAGMENT_BYTES} bytes"
            )
    try:
        trickle.check_if_match(request.headers.get("if-match"), session.etag)
        patch = trickle.read_fragment(
            body.decode("utf-8", errors="replace"),
            session.offer,
            loopback_only=session.settings.loopback_only,
            room=session.candidate_room,
        )
    except trickle.TrickleRejected as exc:
        status = exc.status_hint or 400
        raise HttpProblem(status, str(exc), kind=PATCH_KINDS.get(status, "bad-sdpfrag")) from None
    await session.add_remote(patch)
    return Response(status_code=204)  # RFC 9725 §4.3.2: no body, no ETag


async def delete_session(request: Request) -> Response:
    session = _session(request)
    await session.close("whip-delete")
    return Response(status_code=200)


def whip_routes() -> list[BaseRoute]:
    """The routes to mount in :func:`bridge.http.app.create_app`."""
    return [
        Route(WHIP_PATH, _cors(post_offer), methods=["POST"]),
        Route(WHIP_PATH, preflight, methods=["OPTIONS"]),
        Route(WHIP_PATH + "/{session_id}", _cors(patch_session), methods=["PATCH"]),
        Route(WHIP_PATH + "/{session_id}", _cors(delete_session), methods=["DELETE"]),
        Route(WHIP_PATH + "/{session_id}", session_preflight, methods=["OPTIONS"]),
        Route("/softphone", static_page(WEB_DIR / "softphone.html")),
    ]
