"""The step loop of one generation: each 80 ms step goes out once its audio and text are in.

Timing: a step's delta goes out once its audio is in *and* the recognizer has settled every word
that could land on it (``align.py``), so word times read back from the step clock stay right;
deltas therefore trail live audio by the commit latency (~1-2 s in speech, ~0 in silence),
like a slow vLLM's.  A step held longer than ``max_hold_ms`` goes without its text (bounded
hold: progress whatever the recognizer or the client do).  Decodes run in the engine's worker
pool through the :class:`~bridge.engine.scheduler.DecodeScheduler`, never on the event loop.

The protocol (``protocol.py``) decides every frame; this loop only decides *when*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.exceptions import ConnectionClosed

from bridge.engine.align import StepAligner
from bridge.engine.protocol import RealtimeServerProtocol
from bridge.engine.recognizer import RecognizerStream
from bridge.engine.scheduler import DecodeScheduler

__all__ = ["Generation"]

logger = logging.getLogger(__name__)


class Generation:
    """One generation of a session: its recognizer stream, aligner and step loop task."""

    def __init__(
        self,
        number: int,
        stream: RecognizerStream,
        aligner: StepAligner,
        *,
        protocol: RealtimeServerProtocol,
        send: Callable[[str], Awaitable[None]],
        scheduler: DecodeScheduler,
        max_hold_ms: int,
        session_id: str,
    ) -> None:
        self.number = number
        self.stream = stream
        self.aligner = aligner
        self._protocol = protocol
        self._send = send
        self._scheduler = scheduler
        self._max_hold_ms = max_hold_ms
        self._session_id = session_id
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.held_since: float | None = None  # when the first step now held had its audio in
        self.forced_steps = 0  # steps sent past max_hold_ms, before their text was known

    def start(self) -> None:
        self._task = asyncio.create_task(self._step_loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def accept_audio(self, pcm16: bytes) -> None:
        self.stream.accept_audio(pcm16)
        self._wake.set()

    def end_audio(self) -> None:
        self.stream.end_audio()
        self._wake.set()

    def _current(self) -> bool:
        protocol = self._protocol
        return protocol.generating and protocol.generation == self.number

    async def _step_loop(self) -> None:
        """Send each 80 ms step once its audio is in and its text is known; then ``done``."""
        protocol, stream = self._protocol, self.stream
        try:
            while self._current():
                self._wake.clear()
                await self._send_ready_steps()
                if protocol.generation_complete:
                    if self.forced_steps:
                        logger.info(
                            "session %s: %d step(s) went out after %d ms without their text",
                            self._session_id,
                            self.forced_steps,
                            self._max_hold_ms,
                        )
                    await self._send(protocol.send_done().text)
                    return
                if stream.needs_decode():
                    await self._scheduler.run(stream.decode, urgent=stream.urgent_decode)
                    self.aligner.add_words(stream.take_words())
                    continue
                held = self.held_since
                if held is None:
                    await self._wake.wait()
                else:  # wake up when the held step is due, new audio or not
                    due_s = held + self._max_hold_ms / 1000 - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(0.0, due_s))
        except ConnectionClosed:
            return
        except Exception as exc:  # the recognizer failed: vLLM's generation-task error path
            logger.exception("session %s: recognition failed", self._session_id)
            if self._current():
                with contextlib.suppress(ConnectionClosed):
                    await self._send(protocol.fail_generation(str(exc)).text)

    async def _send_ready_steps(self) -> None:
        """Send every step whose audio is in and whose text is known, and any step held longer
        than ``max_hold_ms`` (bounded hold: progress whatever the recognizer or the client do).
        """
        protocol, stream, aligner = self._protocol, self.stream, self.aligner
        max_hold_s = self._max_hold_ms / 1000
        while protocol.steps_ready > 0:
            step_end = protocol.next_step_end_samples
            if aligner.may_send(step_end, horizon_samples=stream.horizon_samples):
                self.held_since = None
            else:
                now = time.monotonic()
                if self.held_since is None:
                    self.held_since = now
                if now - self.held_since < max_hold_s:
                    return
                self.forced_steps += 1  # steps held as long go too (held_since stays)
            text = aligner.text_for_step(step_end)
            last = protocol.audio_ended and protocol.steps_sent + 1 == (
                protocol.clock.steps_available(protocol.received_samples, ended=True)
            )
            if last and stream.finished:
                text += aligner.flush()  # words committed too late for their own step
            await self._send(protocol.send_delta(text).text)
        self.held_since = None  # nothing held: the next step's hold starts when it is in
