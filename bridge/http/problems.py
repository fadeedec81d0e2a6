"""RFC 9457 problem details: every error the HTTP API answers is ``application/problem+json``.

``{"type", "title", "status", "detail"}``: ``type`` is a stable URI naming the kind of problem
(``about:blank`` plus the status' title for plain HTTP errors), ``detail`` says what was wrong
with this request and what to do.  The app's exception handlers (``problem_handler``,
``http_exception``, ``bridge_error``) answer every error that way.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import BridgeError, StorageError

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "https://call-bridge.invalid/problems/"
MEDIA_TYPE = "application/problem+json"


class HttpProblem(Exception):
    """Raise in a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extra = extra


def problem_body(
    status: int, detail: str, *, kind: str | None = None, **extra: Any
) -> dict[str, Any]:
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + kind if kind else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def problem_response(problem: HttpProblem) -> Response:
    body = problem_body(problem.status, problem.detail, kind=problem.kind, **problem.extra)
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers,
    )


async def problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpProblem)
    return problem_response(exc)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}; see /openapi.json"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(HttpProblem(exc.status_code, detail, headers=headers))


async def bridge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BridgeError)
    status = 503 if getattr(exc, "retryable", False) else 500
    logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    detail = str(exc)
    if isinstance(exc, StorageError):  # its message names the database file: for the log only
        detail = "the transcript store failed (the bridge's log says why)"
    return problem_response(HttpProblem(status, detail, kind="bridge-error"))
