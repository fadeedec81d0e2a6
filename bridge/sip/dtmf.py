"""RFC 4733 telephone events into whole DTMF digits, sans-I/O: one assembler for both places
digits come from — our RTP receiver (``rtp.py``, ``direct``/``siprec`` calls) and pjsua's
``onDtmfEvent`` (``b2bua`` calls, whose media pjsua decodes) — and the reader of SIP INFO digits
(:func:`parse_dtmf_relay`), which the worker reads itself (docs/pjsua2.md P15).

RFC 4733 §2.5: every packet of an event carries the event's start timestamp and its duration so
far; the end bit is set on its last packet (sent three times, §2.5.1.4).  So:

* the first packet of a timestamp opens a digit, timed where the caller says it started;
* the end packet hands the digit over (timed at its start, with its duration);
* a packet of a new timestamp while a digit is open hands the open one over first, with
  duration 0 ("unknown": its end was lost);
* packets of an event that already ended (the repeated end packets) are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bridge.core.numbers import BadNumber, parse_uint
from bridge.errors import RemoteProtocolError

__all__ = ["Digit", "DigitAssembler", "EVENT_DIGITS", "parse_dtmf_relay"]

EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15


@dataclass(frozen=True, slots=True)
class Digit:
    """A DTMF digit that started at leg sample ``position``; ``duration_ms`` 0 when its end
    was never seen."""

    digit: str
    position: int
    duration_ms: int


class DigitAssembler:
    def __init__(self) -> None:
        self._open: tuple[int, str, int] | None = None  # (timestamp, digit, start position)
        self._ended: deque[int] = deque(maxlen=16)  # the last ended events' timestamps

    def receive(
        self, timestamp: int, digit: str, start: int, *, ended: bool, duration_ms: int
    ) -> list[Digit]:
        """One event packet (or callback): ``start`` is where, judging by this packet, the
        event began on the leg clock (used when it is the first one seen of the event)."""
        if timestamp in self._ended:
            return []
        out = self.close() if self._open is not None and self._open[0] != timestamp else []
        if self._open is not None:
            start = self._open[2]
        if not ended:
            self._open = (timestamp, digit, start)
            return out
        self._open = None
        self._ended.append(timestamp)
        out.append(Digit(digit, start, duration_ms))
        return out

    def interrupt(self, timestamp: int) -> list[Digit]:
        """A packet of another event that is no digit: an open digit of another timestamp
        is handed over (its end was lost)."""
        if self._open is not None and self._open[0] != timestamp:
            return self.close()
        return []

    def close(self) -> list[Digit]:
        """The open digit, if any, with its duration unknown (the stream or call ended)."""
        opened, self._open = self._open, None
        if opened is None:
            return []
        timestamp, digit, start = opened
        self._ended.append(timestamp)
        return [Digit(digit, start, 0)]


def parse_dtmf_relay(body: str) -> tuple[str, int]:
    """The digit and duration (ms, 0 if not given) of an ``application/dtmf-relay`` INFO body.

    No RFC defines it; every PBX sends Cisco's lines ``Signal=<digit>`` and ``Duration=<ms>``
    (CR LF or LF ended; the last may be unterminated, which pjsua's own reader aborts on).
    ``Signal`` is a digit of :data:`EVENT_DIGITS` or its RFC 4733 event number (``10`` = ``*``).

    Raises:
        RemoteProtocolError: (400) the body names no such digit, or a bad duration.
    """
    fields: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    signal = fields.get("signal", "").upper()
    if signal.isascii() and signal.isdigit() and 10 <= int(signal) <= 15:
        signal = EVENT_DIGITS[int(signal)]
    if len(signal) != 1 or signal not in EVENT_DIGITS:
        raise RemoteProtocolError(
            f"dtmf-relay body without a Signal=<one of {EVENT_DIGITS}> line", status_hint=400
        )
    duration = fields.get("duration", "")
    try:
        ms = parse_uint(duration, what="dtmf-relay Duration", max_digits=6) if duration else 0
    except BadNumber as exc:
        raise RemoteProtocolError(str(exc), status_hint=400) from None
    return signal, ms
