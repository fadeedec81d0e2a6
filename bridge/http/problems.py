"""RFC 9457 problem details: every error the HTTP API answers is ``application/problem+json``.

``{"type", "title", "status", "detail"}``: ``type`` is a stable URI naming the kind of problem
(``about:blank`` plus the status' title for plain HTTP errors), ``detail`` says what was wrong
with this request and what to do.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

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
