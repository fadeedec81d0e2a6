"""The HTTP transport of ``bridge serve``: uvicorn on the bridge's event loop, on sockets bound
by :func:`bridge.net.listen_sockets`, with its connections guarded.  :func:`bridge.app.run_http`
starts it (:class:`Server`, :func:`server_config`) and stops it.

Hostile clients (no token needed to open a connection) are bounded by :class:`ConnectionLimits`,
enforced by :class:`GuardedH11Protocol` (uvicorn's h11 protocol with timers):

* a request's headers must be complete ``header_timeout_s`` after the connection opened (or the
  previous response ended), however slowly they trickle in: a slowloris client is cut then;
* a request body that sends nothing for ``body_idle_timeout_s`` (while the app waits for it) is
  cut, and the app sees a disconnect;
* at most ``max_connections`` connections (HTTP and WebSocket), and never more than half the
  open-file limit; when full, a new connection closes the one that has waited longest for its
  headers, or is refused (closed at once) if every connection is past its headers.  So a flood
  of half-open connections costs file descriptors only up to the cap, and ``/health`` still
  answers.  (uvicorn's ``limit_concurrency`` is not used: it counts the idle connections too and
  answers 503 to every new request, ``/health`` included, once they fill it.)
* idle keep-alive connections close after ``keep_alive_s``; headers over ``max_header_bytes``
  get 400 (h11); a body answered before it ended (413) is read and dropped for ``linger_s`` so
  the client can see the answer, then the connection is cut.

:func:`raise_open_file_limit` lifts the soft RLIMIT_NOFILE to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

_FD_LIMIT_CEILING = 1 << 20  # where the hard limit is "unlimited": Linux's default nr_open


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """How long and how many HTTP connections may be held (module docstring)."""

    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_header_bytes: int = 16 * 1024
    linger_s: float = 10.0  # a body answered before it ended (413) is read and dropped this long


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; returns (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _FD_LIMIT_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        logger.info("raised the open-file limit from %d to %d", soft, target)
        return soft, target
    return soft, soft


def connection_cap(limits: ConnectionLimits) -> int:
    """``max_connections``, but at most half the soft open-file limit (the rest is for SIP, ASR
    sessions, WebRTC and the store)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    return max(16, min(limits.max_connections, soft // 2))


class ConnectionGuard:
    """What the connections of one server share: the limits, those waiting for headers (oldest
    first) and counters."""

    def __init__(self, limits: ConnectionLimits, max_connections: int) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.waiting: dict[GuardedH11Protocol, None] = {}  # insertion order: oldest first
        self.refused = 0  # closed at once: full, none waiting for headers
        self.evicted = 0  # closed to make room for a new connection
        self.header_timeouts = 0
        self.body_timeouts = 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header/body timeouts and a connection cap (module doc)."""

    guard: ConnectionGuard  # set on the subclass :func:`guarded_protocol` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._last_body_at = 0.0
        self._upgraded = False  # the transport belongs to a WebSocket protocol now

    # -- connection lifecycle --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        full = len(self.connections) >= guard.max_connections
        if full and guard.waiting:
            oldest = next(iter(guard.waiting))
            guard.evicted += 1
            oldest._cut()
            full = False
        super().connection_made(transport)
        if full:
            guard.refused += 1
            self._cut()
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._upgraded = True  # the WebSocket protocol takes over (with its own ping timeouts)
        self._forget()
        super().handle_websocket_upgrade(event)

    def handle_events(self) -> None:
        super().handle_events()
        self._check_progress()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._await_headers()  # the next request on this keep-alive connection
        elif self.conn.their_state is h11.SEND_BODY and self._linger_timer is None:
            # Answered before the body ended (413): h11 drops the rest as it comes, so the
            # client can read the answer, but only for linger_s.
            self._linger_timer = self.loop.call_later(self.guard.limits.linger_s, self._linger)

    # -- timers ------------------------------------------------------------------------------------

    def _await_headers(self) -> None:
        if self in self.guard.waiting:
            return
        self.guard.waiting[self] = None
        self._header_timer = self.loop.call_later(
            self.guard.limits.header_timeout_s, self._header_timeout
        )

    def _check_progress(self) -> None:
        if self._upgraded or self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            return
        if self in self.guard.waiting:  # the request's headers are complete
            del self.guard.waiting[self]
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
        if state is h11.SEND_BODY:
            self._last_body_at = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    self.guard.limits.body_idle_timeout_s, self._body_check
                )

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self in self.guard.waiting:
            self.guard.header_timeouts += 1
            self._cut()

    def _body_check(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        now = self.loop.time()
        timeout = self.guard.limits.body_idle_timeout_s
        if self.flow.read_paused:  # the app is not reading: not the client's fault
            self._last_body_at = now
        idle = now - self._last_body_at
        if idle >= timeout:
            self.guard.body_timeouts += 1
            self._cut()
            return
        self._body_timer = self.loop.call_later(timeout - idle, self._body_check)

    def _linger(self) -> None:
        self._linger_timer = None
        if self.conn.their_state is h11.SEND_BODY:
            self._cut()

    def _forget(self) -> None:
        self.guard.waiting.pop(self, None)
        for timer in (self._header_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = self._linger_timer = None

    def _cut(self) -> None:
        """Close the connection now (the app, if a request runs, sees a disconnect)."""
        self._forget()
        if self._upgraded:
            return
        self.connections.discard(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one server (its connections share one :class:`ConnectionGuard`)."""
    guard = ConnectionGuard(limits, connection_cap(limits))
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def server_config(
    app: Starlette, host: str, port: int, limits: ConnectionLimits | None = None
) -> uvicorn.Config:
    """uvicorn's settings for the bridge: the guarded h11 protocol, uvicorn's log lines through
    the root logger (rate-limited by ``bridge.log.RepeatFilter``)."""
    limits = limits or ConnectionLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        lifespan="off",
        log_level="warning",
        log_config=None,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=5,
    )


class Server(uvicorn.Server):
    """uvicorn without its signal handlers (``bridge serve`` owns SIGINT/SIGTERM: ``stop``),
    and with an event set once its sockets listen."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()
