"""websockets adapter that drives one leg's ASR session against a ``/v1/realtime`` server: the
vLLM dialect (:class:`~bridge.core.asr_protocol.AsrStream`) or OpenAI's transcription session
(:class:`~bridge.core.openai_protocol.OpenAiTranscription`), one shell for both.

It only moves data: frames from ``data_to_send()`` to the socket, frames from the socket into
``receive_message()``, and ``events_received()`` to the leg's callback.
Policy that needs a clock lives here: reconnect with backoff (the stream buffers audio meanwhile,
up to its bound), a stall timeout, and giving up.  Which server it connects to is the pool's
(:mod:`bridge.asr.pool`): a failed connection is reported there, and the next one goes where
the pool says - at once when that is another, healthy server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI

from bridge.asr.endpoint import AsrEndpoint
from bridge.asr.pool import AsrPool, Backend
from bridge.core.asr_events import (
    AsrEvent,
    AsrSession,
    OpenAiEvent,
    ServerError,
    StepText,
    TurnCompleted,
    TurnDelta,
)
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import AsrProtocolError

__all__ = ["AsrClient", "AsrEndpoint", "AsrSession", "backoff_delays", "describe_connect_error"]

logger = logging.getLogger(__name__)

# Text from the server: the session works (a failed server is healthy again).
_PROGRESS = (StepText, TurnDelta, TurnCompleted)
STALL = "no event for"  # how a stalled connection's drop reason starts
# The one drop that is not the server's failure: it ended a generation at max_model_len.
RESET = "the session is due for a new one (vLLM's max_model_len, OpenAI's 60 minutes)"


def backoff_delays(
    first_s: float = 0.25, factor: float = 2.0, max_s: float = 10.0
) -> Iterator[float]:
    """0.25, 0.5, 1, 2, ... 10, 10, ... seconds."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * factor, max_s)


def describe_connect_error(url: str, exc: BaseException) -> tuple[str, bool]:
    """(message, retryable) for a failed connection attempt, in words an operator can act on."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return (
                f"{url} refused the API key (HTTP 401): pass --api-key or set BRIDGE_ASR_API_KEY "
                "to the server's --api-key",
                False,
            )
        if status == 404:
            # vllm-realtime.md §1: the route exists from vLLM 0.16 on, and only for a model with
            # the realtime task.
            return (
                f"{url} has no realtime endpoint (HTTP 404): check the path is /v1/realtime; "
                "vLLM before 0.16 has none (upgrade: bash scripts/install.sh gpu), and vLLM "
                "opens it only for a realtime model such as Voxtral Mini 4B Realtime",
                False,
            )
        return f"{url} answered the WebSocket handshake with HTTP {status}", status >= 500
    if isinstance(exc, InvalidURI):
        return f"{url} is not a WebSocket URL (expected ws://host:port/v1/realtime)", False
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused (is the ASR server running?)", True
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {url}: timed out", True
    return f"cannot connect to {url}: {exc}", True


class AsrClient:
    """Runs one leg's realtime session until the stream closes.

    Args:
        stream: the leg's session of its dialect (owned by the leg; the client only drives it).
        endpoint: the server (address and timeouts), or the pool of servers to run on.
        on_event: called with every ``AsrEvent`` in order, on the event loop.
        connect_fn: ``websockets.asyncio.client.connect`` or a stand-in.
        delays: reconnect backoff.
        log: a logger (adapter) that names the call and leg.
    """

    def __init__(
        self,
        stream: AsrSession,
        endpoint: AsrEndpoint | AsrPool,
        on_event: Callable[[AsrEvent | OpenAiEvent], None],
        *,
        connect_fn: Callable[..., Any] = connect,
        delays: Iterator[float] | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.pool = AsrPool.of(endpoint)
        self.backend: Backend = self.pool.backends[0]  # where the session runs: see place()
        self._placed = False
        self.on_event = on_event
        self._connect = connect_fn
        self._delays = delays or backoff_delays()
        self._log = log
        self._clock = clock
        self._wake = asyncio.Event()
        self._outbox: list[str] = []  # frames for the writer, taken from the stream in order
        self._progress = asyncio.Event()  # set on every server message (flow control)
        self.connected = False  # a socket is open
        self.failure: str | None = None  # why the client gave up, if it did
        self.reconnects = 0
        self.failovers = 0  # times the leg moved to another server of the pool
        self.replayed_samples = 0  # audio the last move sent again to the new server
        self._in_flight = 0  # audio the lost connection had taken without a step
        self._steps = 0  # texts received (vLLM steps, OpenAI deltas), all connections
        self._stalled = 0  # connections in a row that stalled without a step
        self._last_drop = ""  # why the last connection was dropped

    @property
    def endpoint(self) -> AsrEndpoint:
        """The server the session runs on (or will, on the next connection)."""
        return self.backend.endpoint

    # -- called by the leg ---------------------------------------------------------------------

    def place(self) -> None:
        """Count the leg on the pool's best backend now (``run`` does it if not done)."""
        if not self._placed:
            self.backend = self.pool.place()
            self._placed = True

    def release(self) -> None:
        """The leg no longer counts on its backend (``run`` does it when it ends; a task
        cancelled before it ran never gets there)."""
        if self._placed:
            self.pool.release(self.backend)
            self._placed = False

    def send_audio(self, pcm16: bytes, *, speech: bool = True) -> None:
        """Queue one chunk of 16 kHz PCM16 (the stream buffers; the writer sends); ``speech``:
        the leg heard speech in it (the OpenAI dialect ends turns at pauses)."""
        if self.stream.closed:
            return
        self.stream.send_audio(pcm16, speech=speech)
        self._dispatch()

    def recycle(self) -> bool:
        """At a pause: end the running generation (vLLM) or commit the turn (OpenAI)."""
        if not self.stream.recycle():
            return False
        self._dispatch()
        return True

    def end(self) -> None:
        """No more audio: finish the running generation and close after ``done``."""
        if not self.stream.closed:
            self.stream.end_stream()
            self._dispatch()

    async def wait_for_window(self, max_unacknowledged_samples: int) -> None:
        """Flow control for files: wait until the server has caught up to within the window."""
        while self.stream.samples_unacknowledged > max_unacknowledged_samples and not self.closed:
            self._progress.clear()
            await self._progress.wait()

    @property
    def closed(self) -> bool:
        """The leg's stream is over (finished, or given up)."""
        return self.stream.closed

    # -- the connection loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream, reconnect on failure; returns when the stream is closed."""
        self.place()
        try:
            await self._run()
        finally:
            self.release()

    async def _run(self) -> None:
        down_since: float | None = None
        while not self.closed:
            try:
                ws = await self._open()
            except (
                OSError,
                TimeoutError,
                InvalidStatus,
                InvalidURI,
                websockets.WebSocketException,
            ) as exc:
                message, retryable = describe_connect_error(self.endpoint.url, exc)
                if self._fail_over(message):
                    continue  # another server; a refusal by this one may not hold there
                now = self._clock()
                down_since = now if down_since is None else down_since
                limit = self.endpoint.give_up_after_s
                if not retryable or (limit is not None and now - down_since >= limit):
                    self._give_up(message)
                    return
                delay = next(self._delays)
                self._log.warning("ASR %s; retrying in %.2g s", message, delay)
                await asyncio.sleep(delay)
                continue
            down_since = None
            stepped = await self._serve(ws)
            if self.closed:
                return
            # The stream is not closed, so the drop was the server's doing: a failure, unless the
            # session was due for a new one (vLLM's max_model_len, OpenAI's 60 minutes).
            if self._last_drop != RESET and self._fail_over(self._last_drop):
                continue
            if stepped or self._last_drop == RESET:
                self._delays = backoff_delays()
                self._stalled = 0
                continue
            if self._last_drop.startswith(STALL):
                self._stalled += 1
                if self._stalled >= self.endpoint.max_stalled_connections:
                    self._give_up(
                        f"the server at {self.endpoint.url} took the audio but sent no "
                        f"text step on {self._stalled} connections in a row (each "
                        f"{self.endpoint.stall_timeout_s:g} s without an event): it is "
                        "stuck or overloaded; check it (bridge check) and restart it"
                    )
                    return
            # The server took the connection but stepped no audio (at capacity, failing,
            # stuck): do not hammer it.
            await asyncio.sleep(next(self._delays))

    def _fail_over(self, reason: str) -> bool:
        """The backend failed this leg: tell the pool.  Returns whether the leg moved to
        another server (then it reconnects at once: the new one is healthy)."""
        was = self.backend
        self.backend = self.pool.move(was, reason)
        if self.backend is was:
            return False
        self._log.warning(
            "ASR moves from %s to %s (%s); %.2f s of audio it had heard is sent again",
            was.name,
            self.backend.name,
            reason,
            self._in_flight / ASR_SAMPLE_RATE_HZ,
        )
        self.failovers += 1
        self.replayed_samples = self._in_flight
        self._stalled = 0
        return True

    async def _open(self) -> ClientConnection:
        headers = {}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        ws: ClientConnection = await self._connect(
            self.endpoint.session_url,
            additional_headers=headers,
            open_timeout=self.endpoint.open_timeout_s,
            max_size=16 * 2**20,
            compression=None,  # 80 ms of PCM does not compress; save the CPU
        )
        return ws

    async def _serve(self, ws: ClientConnection) -> bool:
        """One connection; returns whether the server stepped any audio on it."""
        self.stream.receive_connected(model=self.endpoint.model)
        self._in_flight = 0
        steps_before = self._steps
        self._log.info("ASR connected to %s (%s)", self.endpoint.url, self.backend.name)
        writer = asyncio.create_task(self._write(ws))
        reason = "closed"
        self.connected = True
        try:
            reason = await self._read(ws)
        finally:
            self.connected = False
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            # Frames this connection did not send belong to its session: the next connection
            # starts a new one and replays the audio itself.
            self._outbox.clear()
            await ws.close()
        self._last_drop = reason
        if not self.closed:
            self.reconnects += 1
            self._log.warning("ASR connection lost (%s); reconnecting, audio is buffered", reason)
            self._in_flight = self.stream.samples_in_flight
            self.stream.receive_connection_lost()
            self._dispatch()
        return self._steps > steps_before

    async def _read(self, ws: ClientConnection) -> str:
        """Feed server frames to the stream; returns why the connection should be dropped."""
        while not self.closed:
            waiting = self.stream.awaiting_reply
            try:
                # Not waiting for anything yet: wake up anyway after the same time and look
                # again, since the writer may have sent audio meanwhile (with no timeout here a
                # server that answered session.created and then fell silent held the leg
                # forever).  A stall is thus noticed within one to two stall timeouts.
                async with asyncio.timeout(self.endpoint.stall_timeout_s):
                    message = await ws.recv()
            except TimeoutError:
                if not waiting:
                    continue
                return f"{STALL} {self.endpoint.stall_timeout_s:g} s"
            except websockets.ConnectionClosed as exc:
                if self.stream.wants_new_session:
                    return RESET  # the writer closed it for a new session
                return f"closed by the server ({exc})"
            if not isinstance(message, str):
                return "the server sent a binary frame"
            try:
                self.stream.receive_message(message)
            except AsrProtocolError as exc:
                self._log.error("ASR protocol violation: %s", exc)
                return str(exc)
            self._progress.set()
            drop = self._dispatch()
            if drop:
                return drop
            if self.stream.wants_new_session:
                return RESET
        return "stream closed"

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            frames, self._outbox = self._outbox, []
            for frame in frames:
                await ws.send(frame)
            if self.closed or self.stream.wants_new_session:
                # The reader may be waiting on a server with nothing left to say (a leg that
                # ends before any audio reached it, an idle session due for renewal): closing
                # ends that wait.
                await ws.close()
                return

    def _dispatch(self) -> str | None:
        """Wake the writer and hand events to the leg.  Returns a reason to drop the socket."""
        # Only when there is something to send or to close: most server messages (a delta
        # per 80 ms) give none, and waking the writer for nothing costs a task switch.
        frames = self.stream.data_to_send()
        if frames:
            self._outbox += frames
        if frames or self.closed or self.stream.wants_new_session:
            self._wake.set()
        drop = None
        for event in self.stream.events_received():
            if isinstance(event, _PROGRESS):
                self._steps += 1
                if not self.backend.healthy:
                    self.pool.working(self.backend)
            elif isinstance(event, ServerError):
                error = event.error
                if error.retryable:
                    self._log.warning("%s", error)
                    drop = f"server error {error.code}"
                else:
                    self._log.error("%s", error)
                    self.failure = str(error)
            self.on_event(event)
        return drop

    def _give_up(self, message: str) -> None:
        self._log.error("ASR giving up: %s", message)
        self.failure = message
        if not self.closed:
            self.stream.fail(message)
            self._dispatch()
        self._progress.set()
