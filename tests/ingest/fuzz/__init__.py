"""Hostile peers of the media forks: what a broken or malicious PBX could send, one module per
protocol, each with a ``connection(rng)`` that makes one connection's worth.

Used by the CI tests (``tests/integration/test_fork_*.py``, 10,000 messages each, driven by
``tests/integration/forks.py``) and by ``benchmarks/fuzz_forks.py`` (as many as asked).
AudioSocket's connections are byte strings for a TCP socket (:mod:`.audiosocket`); the
WebSocket protocols' are a :class:`Hostile`.
"""

from __future__ import annotations

from dataclasses import dataclass

WS_ENDINGS = ("close", "drop")


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile WebSocket connection."""

    path: str  # the listener's path: /freeswitch, /jambonz-stt, ...
    query: str  # the URL's query, without the secret ("" for none)
    messages: list[str | bytes]  # sent in this order
    ending: str  # close (a normal close) | drop (the TCP connection aborted, no close)
