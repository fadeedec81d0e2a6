"""Asterisk AudioSocket listener: Asterisk connects over TCP, one socket per channel's audio.

Thin adapter (docs/design.md §5): frames are read by :mod:`bridge.core.forks.audiosocket`, the
call and its legs are :mod:`bridge.ingest.fork`'s.  Per connection:

1. the peer's address must be in ``allowed_sources`` (AudioSocket has no authentication); a
   refusal is a close, logged with the address;
2. the first frame is the UUID (within ``start_timeout_s``); with ``pair_by = "uuid"`` sockets
   that carry the same UUID are one call, the first to send audio the ``caller`` leg and the
   second the ``callee``; with ``"suffix"`` the UUID's last hex digit names the side (``0``
   caller, ``1`` callee) and the other 31 digits the call;
3. audio frames feed the leg at the rate their kind names (a rate change mid-stream is a
   protocol error); DTMF frames are digits on the leg's clock;
4. the stream ends with a hangup frame (``hangup``), an error frame (``peer-error``), a framing
   error (``protocol-error``: the socket is closed), or silence for ``idle_timeout_s`` / a close
   without a hangup (``disconnected``: the call waits ``rejoin_s`` for the socket to come back).

When ASR capacity is full a new call's socket is closed at once (AudioSocket has no refusal
message; Asterisk's ``AudioSocket()`` returns and the dialplan goes on).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import cast

from bridge.config.ingest import AudioSocketConfig
from bridge.core.forks import audiosocket as wire
from bridge.core.types import AudioEncoding, EndCause, LegRole, LegSource
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkFormat, ForkRefused, ForkStream
from bridge.log import leg_logger
from bridge.net import Listener, listen_sockets

logger = logging.getLogger(__name__)
READ_BYTES = 65536
# Frames waiting for the connection's task (a join, a hangup) past which the socket is not
# read until the task has caught up.
MAX_QUEUED = 256
WATCH_S = 0.5  # how often silent connections are looked for
SUFFIX_ROLES = {"0": LegRole.CALLER, "1": LegRole.CALLEE}
LISTENER = Listener(
    "AudioSocket",
    "ingest.audiosocket.host (BRIDGE_AUDIOSOCKET_HOST)",
    "ingest.audiosocket.port, BRIDGE_AUDIOSOCKET_PORT",
)


def call_key(uid: uuid.UUID, pair_by: str) -> tuple[str, LegRole | None]:
    """The call a socket belongs to, and its side if the UUID names it (``pair_by``)."""
    if pair_by == "suffix":
        role = SUFFIX_ROLES.get(uid.hex[-1])
        if role is None:
            raise RemoteProtocolError(
                f"AudioSocket UUID {uid}: with pair_by = suffix its last hex digit is 0 "
                "(caller) or 1 (callee)"
            )
        return uid.hex[:-1], role
    return str(uid), None


class AudioSocketServer:
    """The TCP listener; every connection is one :class:`_Connection`."""

    def __init__(self, calls: ForkCalls, config: AudioSocketConfig) -> None:
        self.calls = calls
        self.config = config
        self.connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: set[_Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen (a port in use or a foreign host is one TransportError naming the fix)."""
        (sock, *more) = listen_sockets(self.config.host, self.config.port, LISTENER)
        for extra in more:  # a host name with several addresses: the first is enough
            extra.close()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
        self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Every 0.5 s: a connection silent past its timeout is taken as dropped (one timer
        for all connections, not one per read)."""
        while True:
            await asyncio.sleep(WATCH_S)
            now = time.monotonic()
            for conn in self._live:
                conn.check(now)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _accept(self, conn: _Connection, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        if not self.config.allows(str(peer[0])):
            self.refused += 1
            logger.warning(
                "AudioSocket connection from %s refused: not in allowed_sources "
                "([ingest.audiosocket] allowed_sources)",
                peer[0],
            )
            transport.close()
            return
        self.connections += 1
        conn.peer = f"{peer[0]}:{peer[1]}"
        conn.log = leg_logger(logger, "-", "-", f"audiosocket {conn.peer}")
        task = asyncio.create_task(self._serve(conn, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: _Connection, transport: asyncio.Transport) -> None:
        self._live.add(conn)
        try:
            await conn.run()
        except Exception as exc:  # a bug ends this connection only, reported as asyncio would
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"AudioSocket connection from {conn.peer} failed", "exception": exc}
            )
        finally:
            self._live.discard(conn)
            transport.close()


class _Connection(asyncio.Protocol):
    """One socket.  Its audio, once its stream is up, is fed straight from the transport's
    callback; everything else (the UUID, the first audio frame's join, DTMF, the hangup, the
    end of the socket) goes in order to the connection's task, and while that task has frames
    waiting the audio after them waits too.  Saves a task wake-up per 20 ms frame."""

    def __init__(self, server: AudioSocketServer):
        self.server = server
        self.config = server.config
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.frames = wire.FrameReader()
        self.uid: uuid.UUID | None = None
        self.key = ""
        self.role: LegRole | None = None
        self.stream: ForkStream | None = None
        self.audio_kind = -1  # the kind of this stream's audio frames, once it has any
        self.last = time.monotonic()  # when data last came
        self.stalled_s: float | None = None  # set by the watchdog
        self.log = leg_logger(logger, "-", "-", "audiosocket ?")
        # For the task, in order: frames, then at most one end: None (EOF) or the error.
        self._queue: deque[wire.Frame | BaseException | None] = deque()
        self._ended = False  # the end is queued: nothing more is read
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- the transport's callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server._accept(self, self.transport)

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        self.last = time.monotonic()
        try:
            frames = self.frames.feed(data)
        except RemoteProtocolError as exc:
            self._end(exc)
            return
        queue = self._queue
        for frame in frames:
            stream = self.stream
            if not queue and stream is not None and frame.kind == self.audio_kind:  # hot path
                try:
                    stream.feed(frame.payload)
                except Exception as exc:  # the task ends the connection as it would have
                    self._end(exc)
                    return
                continue
            queue.append(frame)
        if queue:
            self._wake()
            if len(queue) > MAX_QUEUED and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._end(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.append(exc)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the task ------------------------------------------------------------------------------

    def check(self, now: float) -> None:
        """The watchdog's look: silent too long means dropped (the task then sees EOF)."""
        timeout = self.config.idle_timeout_s if self.stream else self.config.start_timeout_s
        if self.stalled_s is None and now - self.last > timeout:
            self.stalled_s = timeout
            self._end(None)

    async def _next(self) -> wire.Frame | BaseException | None:
        queue = self._queue
        while not queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = queue.popleft()
        if self._paused and not queue and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return item

    async def run(self) -> None:
        cause = EndCause.DISCONNECTED
        try:
            cause = await self._read()
        except RemoteProtocolError as exc:
            if isinstance(exc, ForkRefused):
                self.log.warning("AudioSocket %s refused: %s", self.uid, exc)
            else:
                self.log.warning("AudioSocket %s: %s; closing", self.uid or "(no UUID)", exc)
            cause = EndCause.PROTOCOL_ERROR
        except (ConnectionError, OSError) as exc:
            self.log.warning("AudioSocket %s dropped: %s", self.uid, exc)
        finally:
            self._ended = True  # whatever still comes is not read
            if self.stream is not None:
                await self.stream.leave(cause)

    async def _read(self) -> EndCause:
        while True:
            item = await self._next()
            if item is None:
                if self.stalled_s is not None:
                    self.log.warning(
                        "AudioSocket %s: nothing for %.0f s; taking the socket as dropped",
                        self.uid or "(no UUID)",
                        self.stalled_s,
                    )
                elif self.frames.pending:
                    self.log.warning(
                        "AudioSocket %s closed inside a frame (%d bytes of it)",
                        self.uid,
                        self.frames.pending,
                    )
                else:
                    self.log.info("AudioSocket %s closed without a hangup frame", self.uid)
                return EndCause.DISCONNECTED
            if isinstance(item, BaseException):
                raise item
            stream = self.stream
            if stream is not None and item.kind == self.audio_kind:
                stream.feed(item.payload)
                continue
            cause = await self._take(item)
            if cause is not None:
                return cause

    async def _take(self, frame: wire.Frame) -> EndCause | None:
        if self.uid is None:
            self.uid = wire.read_uuid(frame)
            self.key, self.role = call_key(self.uid, self.config.pair_by)
            self.log = leg_logger(logger, self.key[:8], "-", f"audiosocket {self.peer}")
            return None
        kind = frame.kind
        rate = wire.audio_rate(kind)
        if rate is not None:
            if self.stream is None:
                self.stream = await self.server.calls.join(
                    LegSource.ASTERISK,
                    self.key,
                    ForkFormat(rate, AudioEncoding.PCM16),
                    roles=None if self.role is None else (self.role,),
                    title=f"AudioSocket {self.key}",
                    metadata={"uuid": str(self.uid), "peer": self.peer},
                    labels=(f"AudioSocket {self.uid}",),
                )
                self.log = self.stream.legs[0].log
                self.audio_kind = kind
            elif rate != self.stream.format.rate_hz:
                raise RemoteProtocolError(
                    f"audio at {rate} Hz after {self.stream.format.rate_hz} Hz on one socket"
                )
            self.stream.feed(frame.payload)
            return None
        if kind == wire.Kind.DTMF:
            digit = wire.read_dtmf(frame)
            if self.stream is not None:
                self.stream.dtmf(digit)
                self.log.debug("DTMF digit (which: never logged, keys are card numbers)")
            return None
        if kind == wire.Kind.HANGUP:
            self.log.info("AudioSocket %s: hangup", self.uid)
            return EndCause.HANGUP
        if kind == wire.Kind.ERROR:
            code = frame.payload.hex() or "none"
            self.log.warning("AudioSocket %s: Asterisk reported an error (code %s)", self.uid, code)
            return EndCause.PEER_ERROR
        if kind == wire.Kind.UUID:
            raise RemoteProtocolError("a second UUID frame on one socket")
        raise RemoteProtocolError(f"unknown frame kind 0x{kind:02x}")
