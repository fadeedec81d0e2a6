"""Query parameters of the HTTP API, read strictly: a bad value is a 400 ``bad-query`` problem
that quotes the value (cut short, control characters escaped) and says what is expected."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request

from bridge.core.numbers import BadNumber, parse_uint

from .problems import HttpProblem

MAX_EPOCH_MS_DIGITS = 15  # 10**15 ms is the year 33658; SQLite integers stop at 19 digits
MAX_QUERY_TEXT = 500


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_uint(
            raw, what=f"query {name}", max_digits=len(str(hi)), minimum=lo, maximum=hi
        )
    except BadNumber:
        raise HttpProblem(
            400, f"query {name}={shown(raw)}: expected an integer {lo}..{hi}", kind="bad-query"
        ) from None


def time_param(request: Request, name: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 instant (UTC if no offset)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    expected = "expected epoch milliseconds or ISO 8601 (e.g. 2026-01-31T09:00:00Z)"
    if raw.isascii() and raw.isdigit():
        try:
            return parse_uint(raw, what=f"query {name}", max_digits=MAX_EPOCH_MS_DIGITS)
        except BadNumber as exc:
            raise HttpProblem(400, f"{exc}: {expected}", kind="bad-query") from None
    try:
        if not raw.isascii() or len(raw) > 64:
            raise ValueError(raw)
        instant = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
        return int(instant.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise HttpProblem(400, f"query {name}={shown(raw)}: {expected}", kind="bad-query") from None


def text_param(request: Request, name: str, max_chars: int = MAX_QUERY_TEXT) -> str | None:
    """A free-text query value: at most ``max_chars``, no control characters (SQLite's FTS5
    ends a string at NUL: ``q=%00`` is an unterminated string to it)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    if len(raw) > max_chars:
        raise HttpProblem(
            400, f"query {name}: at most {max_chars} characters, got {len(raw)}", kind="bad-query"
        )
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in raw):
        raise HttpProblem(
            400, f"query {name}={shown(raw)}: control characters are not allowed", kind="bad-query"
        )
    return raw


def shown(raw: str) -> str:
    """A query value for a problem detail: as it is if short and plain, else quoted and cut."""
    if len(raw) <= 40 and raw.isascii() and raw.isprintable() and "'" not in raw:
        return raw
    return repr(raw) if len(raw) <= 40 else repr(raw[:40]) + f"... ({len(raw)} characters)"
