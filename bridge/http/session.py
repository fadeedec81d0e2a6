"""Browser sessions: who a request is, the login cookie, and the dashboard pages.

A browser logs in once per browser session, for every tab: the login page sends the token to
``POST /api/v1/session`` as ``Authorization: Bearer``, and a page URL with ``?token=TOKEN`` (a
link) is answered with a redirect to the same URL without the token; both set the session
cookie (``auth.SESSION_COOKIE``: HttpOnly, so page scripts never see the token; SameSite=Strict;
no Max-Age, so it ends with the browser session; Secure over https).  From then on the cookie
is the token for pages, REST, downloads and the live WebSocket.  ``DELETE /api/v1/session``
(the Log out button) clears it; ``GET /api/v1/session`` says whom the request authenticates as.

Pages are static files that answer without a token; their scripts read everything over REST and
the live API and go to ``/login`` on a 401.  The pages are not refused server-side on purpose: a
link from another site (a ticket, a chat) opens them without the SameSite=Strict cookie, but the
page's own requests carry it.  ``/`` is the supervisors' table, and the agent's own live call
for an agent (``agent.html``, which follows the agent from call to call).

CSRF: see :func:`bridge.http.auth.cross_site_refusal`.  Starting a session takes the token
only from the ``Authorization`` header, which another origin cannot send without a CORS
preflight: a form on another site cannot log this browser in as someone else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, unquote_plus

from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from bridge.auth import Principal, authenticate

from .auth import (
    SESSION_COOKIE,
    Presented,
    Via,
    cross_site_refusal,
    needs_same_origin,
    presented_token,
    session_cookie_value,
)
from .problems import HttpProblem

Handler = Callable[[Request], Awaitable[Response]]

# Characters a redirect keeps as they are in a path or a query (RFC 3986 §3.3, §3.4); anything
# else, a "%" included, was percent-encoded by the client and stays so.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?%"


def presented(conn: HTTPConnection) -> Presented | None:
    """The token the request presents (header, query or cookie), see ``auth.presented_token``."""
    return presented_token(conn.headers, conn.query_params, conn.cookies)


def principal_of(conn: HTTPConnection, *, what: str = "this endpoint") -> Principal:
    """Who the request is; HttpProblem 401 without a valid token, 403 when it uses the login
    cookie for a change (or the live WebSocket) from a page of another origin."""
    tokens: dict[str, Principal] = conn.app.state.bridge.tokens
    credentials = presented(conn)
    if credentials is None:
        raise HttpProblem(
            401,
            f"{what} needs an API token: send 'Authorization: Bearer TOKEN' (or ?token= for "
            "browser links), or log in at /login in a browser; tokens are configured in "
            "BRIDGE_API_TOKENS",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="bridge"'},
        )
    principal = authenticate(tokens, credentials.token)
    if principal is None:
        if credentials.via is Via.COOKIE:
            problem = HttpProblem(
                401,
                "this browser's login is not valid any more (the bridge's tokens changed?): log "
                "in again at /login",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="bridge", error="invalid_token"'},
            )
            problem.headers["Set-Cookie"] = _cleared_cookie(conn)
            raise problem
        raise HttpProblem(
            401,
            "the API token is not valid: check it against BRIDGE_API_TOKENS",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="bridge", error="invalid_token"'},
        )
    method = conn.scope.get("method", "GET")
    if needs_same_origin(credentials, method=method, websocket=conn.scope["type"] == "websocket"):
        refusal = cross_site_refusal(conn.headers)
        if refusal is not None:
            raise HttpProblem(403, refusal, kind="cross-site")
    return principal


def _secure(conn: HTTPConnection) -> bool:
    return conn.url.scheme in ("https", "wss")


def _set_cookie(response: Response, conn: HTTPConnection, token: str) -> None:
    # No max_age/expires: a session cookie (RFC 6265 §5.3 step 3), gone when the browser closes.
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(token),
        path="/",
        secure=_secure(conn),
        httponly=True,
        samesite="strict",
    )


def _cleared_cookie(conn: HTTPConnection) -> str:
    response = Response()
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(conn), httponly=True, samesite="strict"
    )
    return response.headers["set-cookie"]


# -- /api/v1/session --------------------------------------------------------------------------


def _principal_json(principal: Principal) -> dict[str, str | None]:
    return {"role": principal.role.value, "agent": principal.agent}


async def get_session(request: Request) -> Response:
    """Whom the request authenticates as (a page asks: the cookie is invisible to it)."""
    return JSONResponse(_principal_json(principal_of(request)))


async def start_session(request: Request) -> Response:
    """The login page: the Bearer token becomes this browser session's cookie (200, whom it
    authenticates as)."""
    principal = principal_of(request)
    credentials = presented(request)
    if credentials is None or credentials.via is not Via.BEARER:
        raise HttpProblem(
            400,
            "a login sends its token as 'Authorization: Bearer TOKEN' (the login page does); "
            "not as ?token= or a cookie",
            kind="bad-login",
        )
    response = JSONResponse(_principal_json(principal))
    _set_cookie(response, request, credentials.token)
    response.headers["Cache-Control"] = "no-store"
    return response


async def end_session(request: Request) -> Response:
    """Log out: the session cookie is cleared (204)."""
    principal_of(request, what="logging out")
    response = Response(status_code=204)
    response.headers["Set-Cookie"] = _cleared_cookie(request)
    return response


# -- pages --------------------------------------------------------------------------------------


def _without_token(request: Request) -> str:
    """This request's path and query, every ``token`` parameter taken out, for a Location."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    kept = [
        quote(item.encode("latin-1"), safe=_QUERY_SAFE)
        for item in raw.split("&")
        if item and unquote_plus(item.partition("=")[0]) != "token"
    ]
    path = quote(request.url.path, safe=_PATH_SAFE)
    return path + ("?" + "&".join(kept) if kept else "")


def page(pick: Callable[[Principal | None], Path]) -> Handler:
    """A dashboard page: the file ``pick`` names for the request's principal (None: no valid
    token; the page's script then sends the browser to /login).

    A ``?token=`` in the URL is taken once: the answer is a redirect to the same URL without it
    (nothing of it left in the address bar or the history), with the session cookie set if the
    token is valid (an invalid one changes nothing: the page then says it is not logged in).
    """

    async def handler(request: Request) -> Response:
        credentials = presented(request)
        if credentials is not None and credentials.via is Via.QUERY:
            response = RedirectResponse(_without_token(request), status_code=303)
            if authenticate(request.app.state.bridge.tokens, credentials.token) is not None:
                _set_cookie(response, request, credentials.token)
            response.headers["Cache-Control"] = "no-store"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        principal = None
        if credentials is not None:
            principal = authenticate(request.app.state.bridge.tokens, credentials.token)
        return FileResponse(pick(principal), headers={"Cache-Control": "no-cache"})

    return handler


def static_page(path: Path) -> Handler:
    """A page that is the same file for everyone (``?token=`` links taken as :func:`page` does)."""
    return page(lambda _principal: path)
