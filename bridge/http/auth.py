"""How an HTTP request presents its API token, when it must prove its origin, and what its
token's holder may start.  No I/O.

Tokens and who they belong to are :mod:`bridge.auth`'s.  A request presents its token in one of
three ways, first found wins (:func:`presented_token`):

* ``Authorization: Bearer TOKEN`` (RFC 6750 §2.1): API clients;
* ``?token=TOKEN`` (RFC 6750 §2.3): links and WebSocket clients that cannot set headers;
* the session cookie :data:`SESSION_COOKIE`: browsers, after the login page or a ``?token=``
  link (``bridge.http.session`` sets it).

A cookie goes with every request the browser makes to this host, whoever asked for it (CSRF).
``SameSite=Strict`` keeps it off requests started by other *sites*, but another port of the same
host is the same site (RFC 6265bis §5.2: a site is scheme and registrable domain, no port), so a
request that changes something (POST, PUT, PATCH, DELETE) or opens the live WebSocket on the
strength of the cookie alone must also prove it comes from a page of this origin:
:func:`cross_site_refusal`.  A Bearer token or ``?token=`` proves that by itself: another origin
cannot read it, and cannot send ``Authorization`` without a CORS preflight the bridge answers
only for WHIP.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from bridge.auth import NewCall, Principal, new_call
from bridge.core.types import LegRole
from bridge.errors import ConfigError, Forbidden

from .problems import HttpProblem

#: The browser session's cookie: HttpOnly, SameSite=Strict, no Max-Age (it ends with the browser
#: session), Secure over https.  Its value is the token, percent-encoded (RFC 6265 §4.1.1 allows
#: no comma, semicolon, space or quote in a cookie value).
SESSION_COOKIE = "bridge_session"

#: RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe; everything else may change state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class Via(enum.Enum):
    """Where a request's token came from."""

    BEARER = "bearer"  # Authorization: Bearer TOKEN
    QUERY = "query"  # ?token=TOKEN
    COOKIE = "cookie"  # the session cookie


@dataclass(frozen=True, slots=True)
class Presented:
    """The token a request presents, and how."""

    token: str
    via: Via


def presented_token(
    headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str]
) -> Presented | None:
    """The token of a request: the ``Authorization: Bearer`` header, else ``?token=``, else the
    session cookie.  ``headers`` with lower-case names (as ASGI gives them)."""
    value = headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return Presented(credentials.strip(), Via.BEARER)
    token = query.get("token")
    if token:
        return Presented(token, Via.QUERY)
    cookie = unquote(cookies.get(SESSION_COOKIE, ""))
    return Presented(cookie, Via.COOKIE) if cookie else None


def bearer_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token of a request that carries it itself: the ``Authorization: Bearer`` header,
    else ``?token=`` (no cookie)."""
    presented = presented_token(headers, query, {})
    return None if presented is None else presented.token


def session_cookie_value(token: str) -> str:
    """The session cookie's value for ``token`` (:func:`presented_token` reads it back)."""
    return quote(token, safe="")


def needs_same_origin(presented: Presented, *, method: str, websocket: bool) -> bool:
    """Whether a request must prove it comes from a page of this origin: it changes state or
    opens the live WebSocket, on the strength of the session cookie alone."""
    return presented.via is Via.COOKIE and (websocket or method.upper() not in SAFE_METHODS)


def cross_site_refusal(headers: Mapping[str, str]) -> str | None:
    """Why a request cannot be shown to come from a page of this origin, or None if it can.

    Fetch metadata first (``Sec-Fetch-Site``, sent by current browsers): only ``same-origin``
    passes; ``same-site`` is another port or subdomain of this host.  Then ``Origin`` (RFC 6454
    §7; browsers send it with every POST, PUT, PATCH, DELETE and WebSocket handshake): its host
    and port must be the ``Host`` the request was sent to (RFC 9110 §7.2).  The scheme is not
    compared: behind a proxy that ends TLS the bridge sees http for an https page.  A request
    with neither header did not come from a browser page of this origin.  ``headers`` with
    lower-case names.
    """
    fix = "API clients send 'Authorization: Bearer TOKEN' instead of the login cookie"
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site and site != "same-origin":
        return (
            f"refused: a request from another origin (Sec-Fetch-Site: {site[:40]}) may not use"
            f" this browser's login; {fix}"
        )
    origin = headers.get("origin")
    host = headers.get("host", "")
    if origin is None:
        if site == "same-origin":
            return None
        return (
            "refused: a request that uses this browser's login must come from a page of this"
            f" bridge (no Origin or Sec-Fetch-Site header); {fix}"
        )
    if _same_host(origin, host):
        return None
    return (
        f"refused: Origin {origin[:100]!r} is not this bridge ({host[:100]!r}); a page of another"
        f" origin may not use this browser's login; {fix}"
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _same_host(origin: str, host: str) -> bool:
    """Whether the ``Origin`` names the host and port of the ``Host`` header."""
    try:
        parts = urlsplit(origin.strip())
        default_port = _DEFAULT_PORTS.get(parts.scheme.lower())
        if default_port is None or parts.path or parts.query or not parts.hostname:
            return False  # "null", another scheme, or not an origin
        origin_port = parts.port or default_port
        served = urlsplit("//" + host.strip())
        served_port = served.port or default_port
    except ValueError:  # a port that is not a number, or out of range
        return False
    return served.hostname == parts.hostname and served_port == origin_port


def new_call_of(
    principal: Principal,
    *,
    agent: str | None,
    roles: str | None,
    default_roles: tuple[LegRole, ...],
) -> NewCall:
    """:func:`bridge.auth.new_call` for a request that starts a call (an upload, a WHIP offer):
    an agent naming another is a 403, bad ``roles`` a 400."""
    try:
        return new_call(principal, agent=agent, roles=roles, default_roles=default_roles)
    except Forbidden as exc:
        raise HttpProblem(403, str(exc), kind="forbidden") from None
    except ConfigError as exc:
        raise HttpProblem(400, str(exc), kind="bad-query") from None
