"""Decimal integers from the wire, by ASCII rules only.  Pure: no I/O.

``str.isdigit()`` and ``int()`` accept far more than a protocol allows: ``"²".isdigit()`` is true
(and ``int("²")`` then raises), ``int("٣")`` is 3 (Arabic-Indic), ``int(" 7_0 ")`` is 70, and
``int("9" * 5000)`` raises (CPython's 4,300-digit limit) after spending time on it.  Every number
that a peer sends (an HTTP query, an SDP port or clock rate, a SIP header) is read with
:func:`parse_uint` instead: ``[0-9]{1,max_digits}`` and nothing else, then a range check.

A refusal is :class:`BadNumber`: a :class:`~bridge.errors.RemoteProtocolError` (the peer's fault;
``status_hint`` 400) and a :class:`ValueError`, so ``except ValueError`` around old ``int()`` calls
still catches it.  Its message names ``what`` and shows at most 20 characters of the input.
"""

from __future__ import annotations

import re

from bridge.errors import RemoteProtocolError

_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)


class BadNumber(RemoteProtocolError, ValueError):
    """A number that is not ASCII decimal digits, too long, or out of range."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_hint=400)


def parse_uint(
    text: str,
    *,
    what: str,
    max_digits: int = 10,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    """``text`` as a non-negative integer: 1..``max_digits`` ASCII digits, no sign, no spaces.

    ``minimum``/``maximum`` bound the value (inclusive).  Leading zeros are allowed within
    ``max_digits``.  Raises :class:`BadNumber` naming ``what`` (e.g. ``"query limit"``).
    """
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        raise BadNumber(
            f"{what}: expected a decimal number of 1 to {max_digits} digits 0-9, got {_shown(text)}"
        )
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        top = "" if maximum is None else str(maximum)
        raise BadNumber(f"{what}: {value} is out of range {minimum}..{top}")
    return value


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 20 else repr(text[:20]) + f"... ({len(text)} characters)"
