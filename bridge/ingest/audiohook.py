"""Genesys Cloud AudioHook (protocol v2) on the media-fork listener (/audiohook).

docs/media-forks.md §4.3.  Genesys (AudioHook Monitor, or a transcription connector) opens the
WebSocket with ``X-API-KEY`` (and, when the integration has a client secret, an HTTP message
signature): :meth:`AudioHookFork.authorize` checks them in the handshake (401 otherwise).  Then
the open transaction — ``open`` offers formats, the bridge answers ``opened`` with the one it takes
(:func:`bridge.core.forks.audiohook.choose_media`) — and binary audio: stereo is two legs of the
conversation, ``external`` the ``customer`` and ``internal`` the ``agent``, keyed by the
``conversationId`` so a session that reconnects (``close`` reason ``reconnect``, a drop)
continues them.  ``ping`` is answered ``pong``; ``paused``/``resumed`` and ``discarded`` keep the
leg clock (the discarded time is silence); ``close`` is answered ``closed`` and ends the stream
``hangup``.  Bad input is answered ``disconnect`` (reason ``error``, the problem in ``info``), as
the reference server does, then the client's close transaction is answered ``closed``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from bridge.config.ingest import ForkSocketConfig
from bridge.core.forks import httpsig
from bridge.core.forks.audiohook import Message, Session, parse_duration, read_open
from bridge.core.types import AudioEncoding, EndCause, LegRole, LegSource
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkFormat, ForkRefused, ForkStream
from bridge.ingest.wsfork import START_TIMEOUT_S, WebSocketFork, close_reason, secret_refusal

logger = logging.getLogger(__name__)
IDLE_S: Final = 60.0  # no message for this long (Genesys pings while paused): the stream dropped
WIND_DOWN_S: Final = 5.0  # after disconnect/closed: how long the client has to finish
ROLES: Final = {"external": LegRole.CUSTOMER, "internal": LegRole.AGENT}
# close reason -> how the stream ends ("reconnect": Genesys comes back with the same call)
CLOSE_CAUSES: Final = {
    "end": EndCause.HANGUP,
    "disconnect": EndCause.HANGUP,
    "error": EndCause.PEER_ERROR,
    "reconnect": EndCause.DISCONNECTED,
}


class Stalled(RemoteProtocolError):
    """Nothing came for too long: a drop, not a broken protocol (the call may rejoin)."""


def header(request: Request, name: str) -> str | None:
    """A request header, every occurrence joined by ``", "`` (None when absent)."""
    values = request.headers.get_all(name)
    return ", ".join(values) if values else None


class AudioHookFork(WebSocketFork):
    name = "audiohook"
    subprotocols: tuple[str, ...] = ()

    def authorize(self, request: Request, config: ForkSocketConfig) -> str | None:
        """``X-API-KEY`` must be ``audiohook_api_key``; with ``audiohook_client_secret`` the
        upgrade must carry a valid signature (:mod:`bridge.core.forks.httpsig`).  Without an
        API key set, the shared secret (``?token=`` in the connection URI) applies."""
        api_key = config.audiohook_api_key
        if not api_key:
            return secret_refusal(request, config.secret)
        given = header(request, "x-api-key") or ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return "X-API-KEY is not the integration's API key (BRIDGE_AUDIOHOOK_API_KEY)"
        if config.audiohook_client_secret:
            key = base64.b64decode(config.audiohook_client_secret)
            try:
                httpsig.verify(
                    lambda name: header(request, name),
                    request.path,
                    key,
                    now=time.time(),
                    api_key=api_key,
                )
            except httpsig.SignatureError as exc:
                return f"the request signature: {exc}"
        return None

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        await _Connection(ws, calls).run()


class _Connection:
    def __init__(self, ws: ServerConnection, calls: ForkCalls) -> None:
        self.ws = ws
        self.calls = calls
        self.session = Session()
        self.stream: ForkStream | None = None
        self.conversation = "?"
        address = ws.remote_address
        self.peer = f"{address[0]}:{address[1]}" if address else "?"
        self.cause: EndCause | None = None  # how the stream ended, once it has

    def log(self, level: int, text: str, *args: object) -> None:
        logger.log(
            level,
            "AudioHook session %s (conversation %s) from %s: " + text,
            self.session.id,
            self.conversation,
            self.peer,
            *args,
        )

    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(WIND_DOWN_S):
                await self.ws.send(json.dumps(message, ensure_ascii=False))

    async def run(self) -> None:
        try:
            limit = START_TIMEOUT_S
            while self.cause is None:
                try:
                    async with asyncio.timeout(limit):
                        data = await self.ws.recv()
                except TimeoutError:
                    raise Stalled(f"no message for {limit:.0f} s") from None
                limit = IDLE_S
                if isinstance(data, bytes):
                    self.session.check_audio(data)
                    if self.stream is not None:
                        self.stream.feed(data)
                else:
                    await self.handle(self.session.receive(data))
            await self.wind_down(wait_for_close=False)
        except ConnectionClosed:
            self.log(logging.WARNING, "the connection dropped without a close transaction")
            await self.leave(EndCause.DISCONNECTED)
        except RemoteProtocolError as exc:
            await self.fail(exc)
        finally:
            await self.leave(EndCause.DISCONNECTED)

    async def handle(self, message: Message) -> None:
        kind, params = message.type, message.parameters
        if kind == "open":
            await self.open(params)
        elif kind == "ping":
            await self.send(self.session.reply("pong"))
        elif kind == "paused" and self.session.state == "open":
            self.session.state = "paused"
            if self.stream is not None:
                self.stream.pause()
        elif kind == "resumed" and self.session.state == "paused":
            self.session.state = "open"
            discarded = self.duration(params, "discarded", required=False)
            if self.stream is not None:
                self.stream.resume()
                self.stream.silence(discarded)
        elif kind == "discarded":
            self.duration(params, "start", required=True)
            discarded = self.duration(params, "discarded", required=True)
            if self.stream is not None:
                self.stream.silence(discarded)
                self.stream.call.event("genesys.discarded", f"{discarded:.3f} s")
        elif kind == "update" and self.stream is not None:
            self.stream.call.event("genesys.update", json.dumps(params)[:1024])
        elif kind == "error":
            self.log(logging.WARNING, "Genesys reported an error: %.300s", json.dumps(params))
            if self.stream is not None:
                self.stream.call.event("genesys.error", json.dumps(params)[:1024])
        elif kind == "close":
            reason = params.get("reason")
            cause = CLOSE_CAUSES.get(reason if isinstance(reason, str) else "", EndCause.HANGUP)
            await self.send(self.session.closed())
            await self.leave(cause)
            self.cause = cause

    def duration(self, params: dict[str, Any], key: str, *, required: bool) -> float:
        if key not in params and not required:
            return 0.0
        return parse_duration(params.get(key), what=key)

    async def open(self, params: dict[str, Any]) -> None:
        opening = read_open(params)
        self.conversation = opening.conversation_id
        media = opening.media
        if opening.probe:  # "connection probe": answer, take no call
            self.log(logging.INFO, "connection probe answered")
            await self.send(self.session.opened(media))
            return
        if media is None:
            raise RemoteProtocolError("open: no media offered")
        encoding = AudioEncoding.PCMU if media.format == "PCMU" else AudioEncoding.PCM16
        self.stream = await self.calls.join(
            LegSource.GENESYS,
            opening.conversation_id,
            ForkFormat(media.rate, encoding, len(media.channels)),
            roles=[ROLES[channel] for channel in media.channels],
            title=f"Genesys {opening.conversation_id}",
            metadata={"sessionId": self.session.id, "peer": self.peer, **opening.metadata()},
            labels=list(media.channels),
        )
        self.log(logging.INFO, "opened: %s %s", media.format, "+".join(media.channels))
        await self.send(self.session.opened(media))

    async def leave(self, cause: EndCause) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await stream.leave(cause)

    async def fail(self, exc: RemoteProtocolError) -> None:
        """``disconnect`` with the reason, then the client's close transaction."""
        busy = isinstance(exc, ForkRefused) and exc.reason == "busy"
        self.log(logging.WARNING, "%s; disconnecting", exc)
        await self.leave(
            EndCause.DISCONNECTED if isinstance(exc, Stalled) else EndCause.PROTOCOL_ERROR
        )
        info = str(exc) if busy else f"Client Error: {exc}"
        await self.send(self.session.disconnect("error", info))
        await self.wind_down(wait_for_close=True, code=1013 if busy else 1008, why=str(exc))

    async def wind_down(self, *, wait_for_close: bool, code: int = 1000, why: str = "") -> None:
        """Answer the client's ``close`` (when awaited) and let it close the socket first; a
        client that does not within :data:`WIND_DOWN_S` is closed with ``code``."""
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(WIND_DOWN_S):
                while True:
                    data = await self.ws.recv()
                    if wait_for_close and isinstance(data, str) and self.is_close(data):
                        await self.send(self.session.closed())
                        wait_for_close = False
        await self.ws.close(code, close_reason(why))

    def is_close(self, text: str) -> bool:
        """After a ``disconnect`` any ``close`` is answered, however its counters read."""
        try:
            message = json.loads(text[:4096])
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("type") != "close":
            return False
        seq = message.get("seq")
        if type(seq) is int and 0 <= seq < 2**53:
            self.session.clientseq = seq
        return True
