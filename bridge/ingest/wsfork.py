"""What the WebSocket media forks share: the base of every protocol (:class:`WebSocketFork`:
its path, subprotocols and how it authenticates), reading the first message, the close codes
for each way a stream ends, how a connection's stream ends (:func:`ending`), and the queue that
sends text back to the peer."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.http11 import Request

from bridge.config.ingest import ForkSocketConfig
from bridge.core.types import EndCause, Gap, LegInfo, Segment
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkRefused, ForkStream

logger = logging.getLogger(__name__)

# RFC 6455 §7.4.1 (and the IANA registry for 1013).
POLICY_VIOLATION = 1008  # a URL or message the protocol does not allow
INVALID_DATA = 1007  # audio that is not whole samples of the announced format
TRY_AGAIN_LATER = 1013  # ASR capacity is full
START_TIMEOUT_S = 5.0  # the first message must come within this
REPLY_QUEUE = 256  # text messages waiting for a slow peer; more are dropped (counted)
DRAIN_S = 5.0  # how long the last replies may take to go out before a close


def query_of(path: str) -> dict[str, str]:
    """``/x?a=1&b=2`` -> ``{"a": "1", "b": "2"}`` (the first value of each)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(path).query).items()}


def presented_secret(request: Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query_of(request.path).get("token")


def secret_refusal(request: Request, secret: str | None) -> str | None:
    """Why ``request`` is refused for want of the shared secret (``None``: it has it, or none
    is set)."""
    if secret is None:
        return None
    given = presented_secret(request) or ""
    if hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return "the stream URL needs the bridge's secret: ?token=BRIDGE_FORKS_SECRET"


class WebSocketFork(ABC):
    """One protocol on the media-fork listener (its module in ``bridge/ingest/``).

    A protocol with its own authentication (jambonz Basic auth, Twilio's signature, AudioHook's
    API key) overrides :meth:`authorize`; a refusal is ``refusal_status`` with the reason, and
    ``challenge`` as ``WWW-Authenticate`` when set.
    """

    name: str  # the path: /name
    subprotocols: tuple[str, ...] = ()  # those it speaks; () when the peer names none
    refusal_status: HTTPStatus = HTTPStatus.UNAUTHORIZED
    challenge: str | None = None

    def authorize(self, request: Request, config: ForkSocketConfig) -> str | None:
        """Why the upgrade is refused (``None``: it may go on).  By default: the secret."""
        return secret_refusal(request, config.secret)

    @abstractmethod
    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        """The connection after the handshake, until it ends."""


def close_reason(text: str) -> str:
    """At most 123 bytes of UTF-8 (RFC 6455 §5.5: a close frame's payload is at most 125 bytes,
    2 of them the code); cut by bytes, not characters, so no peer text can make it too long."""
    return text.encode()[:123].decode(errors="ignore")


def close_code(exc: RemoteProtocolError) -> int:
    if isinstance(exc, ForkRefused):
        return TRY_AGAIN_LATER if exc.reason == "busy" else POLICY_VIOLATION
    return INVALID_DATA if "samples" in str(exc) else POLICY_VIOLATION


async def first_message(ws: ServerConnection) -> str | bytes:
    """The stream's first message (``RemoteProtocolError`` if none comes in time)."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            return await ws.recv()
    except TimeoutError:
        raise RemoteProtocolError(f"no message within {START_TIMEOUT_S:.0f} s") from None


def end_cause(exc: ConnectionClosed | None) -> EndCause:
    """A close the peer started with a close frame is its hangup; anything else a drop."""
    if exc is None or isinstance(exc, ConnectionClosedOK):
        return EndCause.HANGUP
    return EndCause.DISCONNECTED


@dataclass(slots=True)
class StreamEnd:
    """What :func:`ending` leaves with: the connection's stream once joined, and the cause
    once the protocol said how it ended (a ``stop``: ``hangup``); ``what`` names the stream in
    the log until it has joined a call (an adapter may name it better once it knows more)."""

    what: str
    stream: ForkStream | None = None
    cause: EndCause | None = None


@asynccontextmanager
async def ending(
    ws: ServerConnection,
    what: str,
    *,
    replies: Replies | None = None,
    answer: Callable[[str], dict[str, Any]] | None = None,
    code_of: Callable[[RemoteProtocolError], int] = close_code,
) -> AsyncIterator[StreamEnd]:
    """One connection's stream, ended once however the connection ends.

    * the peer closes: the stream leaves ``hangup`` after a close frame, else ``disconnected``
      (:func:`end_cause`; the call then waits ``rejoin_s``);
    * a :class:`RemoteProtocolError` (a refusal included): a log line naming ``what`` (or the
      call), the error to the peer when the protocol has a message for it (``answer``, sent
      through ``replies`` before the close), the close ``code_of(exc)`` with the reason, and
      ``protocol-error``;
    * ``replies`` stop before the stream leaves.
    """
    end = StreamEnd(what)
    closed: ConnectionClosed | None = None
    try:
        yield end
    except ConnectionClosed as exc:
        closed = exc
    except RemoteProtocolError as exc:
        (end.stream.call.log if end.stream is not None else logger).warning(
            "%s: %s; closing", end.what, exc
        )
        if replies is not None and answer is not None:
            replies.put(answer(str(exc)))
            await replies.drain()
        await ws.close(code_of(exc), close_reason(str(exc)))
        end.cause = EndCause.PROTOCOL_ERROR
    finally:
        if replies is not None:
            await replies.close()
        if end.stream is not None:
            await end.stream.leave(end.cause or end_cause(closed or ws.close_exc))


class Replies:
    """Text for the peer, sent in order by one task; a peer that stops reading loses the
    newest messages beyond :data:`REPLY_QUEUE` (counted in ``dropped``), never the call.
    :meth:`drain` waits (up to :data:`DRAIN_S`) until what was put has gone out."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(REPLY_QUEUE)
        self.dropped = 0
        self._task = asyncio.create_task(self._send())

    def put(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(json.dumps(message, ensure_ascii=False))
        except asyncio.QueueFull:
            self.dropped += 1

    def segment_tap(
        self, shape: Callable[[LegInfo, Segment], dict[str, Any]]
    ) -> Callable[[LegInfo, Segment | Gap], None]:
        def tap(leg: LegInfo, item: Segment | Gap) -> None:
            if isinstance(item, Segment):
                self.put(shape(leg, item))

        return tap

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await self.queue.get()
                try:
                    await self.ws.send(message)
                finally:
                    self.queue.task_done()

    async def drain(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await self.queue.join()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
