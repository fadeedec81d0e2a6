"""The media-fork WebSocket listener: one port, one path per protocol (``/freeswitch``, ...).

Thin adapter (docs/design.md §5) on the ``websockets`` server: the handshake is checked here
for every protocol alike — the path names a protocol that is enabled (404 otherwise), the peer
authenticates as the protocol asks (by default the shared secret as ``?token=`` or
``Authorization: Bearer``: 401), ASR capacity is not full (503 with ``Retry-After``), the
subprotocol is one the protocol speaks — and the connection is then the protocol's
(:class:`~bridge.ingest.wsfork.WebSocketFork`).  Per-message deflate is accepted (FreeSWITCH's
mod_audio_stream asks for it by default).  Every message is at most
``max_message_bytes``; a larger one closes the connection with 1009 (RFC 6455 §7.4.1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from bridge.config.ingest import ForkSocketConfig
from bridge.ingest.fork import ForkCalls
from bridge.ingest.wsfork import WebSocketFork, query_of
from bridge.leg import capacity_problem
from bridge.net import Listener, listen_sockets

logger = logging.getLogger(__name__)

LISTENER = Listener(
    "media-fork WebSocket",
    "ingest.websocket.host (BRIDGE_FORKS_HOST)",
    "ingest.websocket.port, BRIDGE_FORKS_PORT",
)
RETRY_AFTER_S = 5


class ForkSocketServer:
    """The listener and the protocols it serves."""

    def __init__(
        self, calls: ForkCalls, config: ForkSocketConfig, protocols: list[WebSocketFork]
    ) -> None:
        self.calls = calls
        self.config = config
        self.protocols = {p.name: p for p in protocols if p.name in config.protocols}
        self.refused: dict[int, int] = {}  # status -> handshakes refused
        self._server: Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def start(self) -> None:
        (sock, *more) = listen_sockets(self.config.host, self.config.port, LISTENER)
        for extra in more:
            extra.close()
        self._server = await serve(
            self._run,
            sock=sock,
            process_request=self._check,
            select_subprotocol=self._subprotocol,
            compression="deflate",
            max_size=self.config.max_message_bytes,
            max_queue=32,
            server_header=None,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _refuse(self, ws: ServerConnection, status: HTTPStatus, why: str) -> Response:
        self.refused[status.value] = self.refused.get(status.value, 0) + 1
        logger.warning("media fork from %s refused (%d): %s", ws.remote_address, status, why)
        response = ws.respond(status, why + "\n")
        if status is HTTPStatus.SERVICE_UNAVAILABLE:
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    def _check(self, ws: ServerConnection, request: Request) -> Response | None:
        name = urlsplit(request.path).path.strip("/").split("/", 1)[0]
        if name not in self.protocols:
            known = ", ".join(f"/{p}" for p in self.protocols) or "none enabled"
            return self._refuse(ws, HTTPStatus.NOT_FOUND, f"no media fork at this path ({known})")
        # The shared secret, or the protocol's own authentication (jambonz Basic auth, ...).
        protocol = self.protocols[name]
        why = protocol.authorize(request, self.config)
        if why is not None:
            response = self._refuse(ws, protocol.refusal_status, why)
            if protocol.challenge:  # RFC 9110 §11.6.1
                response.headers["WWW-Authenticate"] = protocol.challenge
            return response
        busy = capacity_problem(self.calls.endpoint)
        if busy:
            return self._refuse(ws, HTTPStatus.SERVICE_UNAVAILABLE, busy)
        return None

    def _subprotocol(
        self, ws: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        request = ws.request
        assert request is not None
        name = urlsplit(request.path).path.strip("/").split("/", 1)[0]
        spoken = self.protocols[name].subprotocols
        for subprotocol in offered:
            if subprotocol in spoken:
                return subprotocol
        return None  # websockets then answers without one; peers that insist close

    async def _run(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        name = urlsplit(request.path).path.strip("/").split("/", 1)[0]
        try:
            await self.protocols[name].run(ws, query_of(request.path), self.calls)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must end this connection only, never the listener
            logger.exception("media fork %s from %s failed", name, ws.remote_address)
            await ws.close(1011, "internal error")


def fork_protocols() -> list[WebSocketFork]:
    """Every protocol the listener can serve (``[ingest.websocket] protocols`` picks)."""
    from bridge.ingest.asterisk_ws import AsteriskWebSocketFork
    from bridge.ingest.audiohook import AudioHookFork
    from bridge.ingest.freeswitch import FreeSwitchFork
    from bridge.ingest.jambonz import JambonzListenFork, JambonzSttFork
    from bridge.ingest.twilio import TwilioFork

    return [
        FreeSwitchFork(),
        JambonzListenFork(),
        JambonzSttFork(),
        AsteriskWebSocketFork(),
        TwilioFork(),
        AudioHookFork(),
    ]
