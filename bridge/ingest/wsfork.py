"""What the WebSocket media forks share after the handshake: reading the first message, the
close codes for each way a stream ends, and the queue that sends text back to the peer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from bridge.core.types import EndCause, Gap, LegInfo, Segment
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkRefused

logger = logging.getLogger(__name__)

# RFC 6455 §7.4.1 (and the IANA registry for 1013).
POLICY_VIOLATION = 1008  # a URL or message the protocol does not allow
INVALID_DATA = 1007  # audio that is not whole samples of the announced format
TRY_AGAIN_LATER = 1013  # ASR capacity is full
START_TIMEOUT_S = 5.0  # the first message must come within this
REPLY_QUEUE = 256  # text messages waiting for a slow peer; more are dropped (counted)


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


class Replies:
    """Text for the peer, sent in order by one task; a peer that stops reading loses the
    newest messages beyond :data:`REPLY_QUEUE` (counted in ``dropped``), never the call."""

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
                await self.ws.send(await self.queue.get())

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
