"""One call leg end to end (design.md §2).

::

    frames (G.711 / PCM16, any rate)  -> LegAudio: decode, resample to 16 kHz, 80 ms chunks
      -> AsrStream / AsrClient         realtime session, recycled at pauses (vLLM dialect)
         or OpenAiTranscription        turns committed at pauses (OpenAI dialect)
      -> TranscriptAssembler           steps -> words -> segments (or TurnAssembler: turns)
      -> TranscriptStore + listeners   SQLite (one writer for all legs) and live views

``receive_frame`` is synchronous and cheap: it is what ingest adapters call for every 20 ms
frame on the event loop.  ``run`` drives the ASR connection; ``finish`` ends the leg cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from websockets.asyncio.client import connect

from bridge.asr.client import AsrClient, AsrEndpoint
from bridge.asr.pool import AsrPool, Backend
from bridge.asr.sessions import open_session
from bridge.core.asr_events import OpenAiEvent, TurnCompleted
from bridge.core.asr_protocol import (
    AsrEvent,
    AsrState,
    AudioDropped,
    Closed,
    GenerationEnded,
    ServerError,
    SessionStarted,
    StepText,
)
from bridge.core.audio import LegAudio
from bridge.core.redact import RedactionPolicy, Redactor
from bridge.core.rut import RutGuard
from bridge.core.transcript import SegmentPolicy
from bridge.core.types import (
    ASR_SAMPLE_RATE_HZ,
    CHUNK_SAMPLES,
    Gap,
    LegEvent,
    LegInfo,
    Segment,
    samples_to_ms,
)
from bridge.legs import COUNTERS, LIVE, LegCounters, LegRegistry, live_legs
from bridge.log import leg_logger

__all__ = [
    "COUNTERS",
    "LIVE",
    "Leg",
    "LegCounters",
    "LegRegistry",
    "LegResult",
    "LegSettings",
    "LegSink",
    "Listener",
    "capacity_problem",
    "live_legs",
]

logger = logging.getLogger(__name__)

PAUSED = "paused"  # the reason of a gap while a call is paused (a payment step)
_SILENCE = bytes(2 * CHUNK_SAMPLES)  # what a paused leg sends in place of an 80 ms chunk


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSettings:
    """How a leg talks to the ASR server and cuts its transcript."""

    # Start a fresh generation at the next pause after this: a vLLM session's cost per step
    # grows with its length (vLLM #58324; benchmarks/README.md: 15 ms -> 55 ms mean per step
    # over 5 min on CPU, flat with recycling), and a recycle costs only one prefill.
    recycle_after_s: float = 120.0
    recycle_pause_ms: int = 480  # quiet audio that counts as a pause
    # Voxtral's guards (0: off; app.leg_settings turns them on for a vLLM server).  Speech-level
    # audio with no text this long: a new generation (vLLM #47614's blank-token rut).
    rut_after_s: float = 0.0
    # Text this far behind the audio sent: the leg is lagging, and new legs are refused until
    # it is back within half of it.
    max_step_lag_ms: float = 0.0
    quiet_dbfs: float = -45.0  # RMS below this is quiet
    max_buffer_s: float = 60.0  # audio kept while the server is unreachable
    # OpenAI dialect: a session is renewed after this much audio ("The maximum duration of a
    # Realtime session is 60 minutes"), at a turn boundary.
    session_max_s: float = 55 * 60.0
    # OpenAI dialect: an 8 kHz G.711 leg sends its own bytes (audio/pcmu, audio/pcma), not
    # 24 kHz PCM; off for a server that takes only PCM.
    g711_passthrough: bool = True
    # What never leaves the leg unredacted (bridge/core/redact): cards and CVVs by default.
    redaction: RedactionPolicy = RedactionPolicy()
    segments: SegmentPolicy = SegmentPolicy()


@dataclass(frozen=True, slots=True)
class LegResult:
    leg_id: str
    samples: int
    segments_final: int
    gaps_ms: int
    generations: int
    failure: str | None


# A live view: partial and final segments, and gaps, as they happen.
Listener = Callable[[LegInfo, Segment | Gap], None]


class LegSink(Protocol):
    """What a leg writes its transcript to (``storage.TranscriptStore`` is one;
    ``bridge.call.TranscriptSink`` adds what a whole call writes)."""

    def put_segment(self, segment: Segment) -> None: ...

    def put_gap(self, gap: Gap) -> None: ...

    def put_event(self, event: LegEvent) -> None: ...

    async def end_leg(self, leg_id: str, *, ended_at_ms: int, duration_ms: int) -> None: ...


def capacity_problem(asr: AsrEndpoint | AsrPool, new_legs: int = 1) -> str | None:
    """Why the ASR side cannot take ``new_legs`` more legs now (``None``: it can): every server
    that counts runs its ``max_legs`` legs already, or is behind real time on a live leg (a
    server that cannot keep up is not given more).  The rules: :mod:`bridge.asr.pool`."""
    return AsrPool.of(asr).admission_problem(new_legs)


class Leg:
    """Audio of one speaker direction on its way to a stored transcript."""

    def __init__(
        self,
        info: LegInfo,
        audio: LegAudio,
        endpoint: AsrEndpoint | AsrPool,
        store: LegSink,
        *,
        settings: LegSettings | None = None,
        listener: Listener | None = None,
        connect_fn: Callable[..., Any] = connect,
    ) -> None:
        self.info = info
        self.audio = audio
        self.settings = settings or LegSettings()
        self.store = store
        self.listener = listener
        self.log = leg_logger(logger, info.call_id, info.leg_id, info.role.value)
        pool = AsrPool.of(endpoint)
        self.stream, self.assembler = open_session(pool, self.settings, audio, info)
        self.client = AsrClient(
            self.stream, pool, self._on_event, connect_fn=connect_fn, log=self.log
        )
        self.redactor = Redactor(self.settings.redaction)
        # Pause detection for recycling: mean square of a chunk below this is quiet.
        full_scale = 32768.0 * 10 ** (self.settings.quiet_dbfs / 20)
        self._quiet_power = full_scale * full_scale
        self._quiet_samples = 0
        self._rut = RutGuard(self.settings.rut_after_s, ASR_SAMPLE_RATE_HZ)
        self._recycle_samples = int(self.settings.recycle_after_s * ASR_SAMPLE_RATE_HZ)
        self._pause_samples = self.settings.recycle_pause_ms * ASR_SAMPLE_RATE_HZ // 1000
        self._finals = 0
        self._gap_samples = 0
        self._generations = 0
        self._open_gap: tuple[int, int, str] | None = None  # start, samples, reason
        # Step lag: when the audio each step needs was handed to the client (leg samples, time).
        self._clock = time.monotonic
        self._sent_at: deque[tuple[int, float]] = deque(maxlen=256)  # ~20 s of 80 ms chunks
        self._first_step = pool.clock.first_step_samples
        self.step_lag_ms: float | None = None  # text behind audio, from the last step
        self.lagging = False  # the server is behind real time on this leg (max_step_lag_ms)
        self._lagging_on: Backend | None = None  # the server it was lagging on
        self._backend: str | None = None  # the server of the last session (for asr.failover)
        self._waiting_since: float | None = None  # first chunk sent since the last step
        self._task: asyncio.Task[None] | None = None
        self.paused = False  # a payment step: audio is not transcribed (pause/resume)
        self._position = 0  # leg-clock sample of the next chunk

    # -- audio in ------------------------------------------------------------------------------

    def receive_frame(self, payload: bytes, position: int | None = None) -> None:
        """One frame of the leg's codec; ``position`` in input samples, if the source knows it."""
        self.audio.receive_frame(payload, position=position)
        for chunk in self.audio.chunks_ready():
            self._send_chunk(chunk)

    def receive_silence(self, samples_in: int) -> None:
        """Audio the source did not get (hold, lost packets): the leg clock goes on."""
        self.audio.receive_silence(samples_in)
        for chunk in self.audio.chunks_ready():
            self._send_chunk(chunk)

    def _quiet(self, chunk: bytes) -> bool:
        """Mean square below ``quiet_dbfs``: a pause, not speech."""
        pcm = np.frombuffer(chunk, dtype=np.int16).astype(np.float32)
        return float(np.dot(pcm, pcm)) / max(len(pcm), 1) < self._quiet_power

    def pause(self) -> None:
        """A payment step (``Call.pause``): the audio stays here - silence goes to ASR in its
        place, the leg clock goes on - and the span is a ``paused`` gap."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._flush_gap()  # stored and pushed now

    def _censor(self, chunk: bytes, start: int) -> bytes:
        """While paused: silence of the chunk's length instead, the span a ``paused`` gap."""
        self._extend_gap(start, len(chunk) // 2, PAUSED)
        return _SILENCE if len(chunk) == len(_SILENCE) else bytes(len(chunk))

    def _send_chunk(self, chunk: bytes) -> None:
        samples, start = len(chunk) // 2, self._position
        self._position += samples
        if self.client.failure:
            # The ASR side gave up: the rest of the leg is a gap, not silently dropped.
            self._extend_gap(start, samples, self.client.failure)
            return
        if self.paused:
            chunk, quiet = self._censor(chunk, start), True
        else:
            quiet = self._quiet(chunk)
        self._quiet_samples = self._quiet_samples + samples if quiet else 0
        self._rut.audio(samples, speech=not quiet)
        self.client.send_audio(chunk, speech=not quiet)
        now = self._clock()
        self._sent_at.append((self.stream.samples_received, now))
        if self._waiting_since is None:
            self._waiting_since = now
        self._check_lag(now)
        if self._rut.due and self.client.recycle():
            self._record_rut()
        age = self.stream.samples_received - self.stream.generation_start
        if age >= self._recycle_samples and self._quiet_samples >= self._pause_samples:
            # design.md §2: sessions slow down as they grow (vLLM #58324); recycle at a pause.
            if self.client.recycle():
                self.log.info("recycled the ASR session after %.1f s", age / ASR_SAMPLE_RATE_HZ)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.client.place()  # counted on its server now: the next admission sees it
        self._task = asyncio.create_task(self.client.run(), name=f"asr-{self.info.leg_id}")
        LIVE.add(self)

    async def abort(self) -> None:
        """Stop the ASR task now (the caller was cancelled); nothing more is stored."""
        self._set_lagging(False)
        LIVE.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.client.release()

    async def finish(self, *, timeout_s: float | None = None) -> LegResult:
        """No more audio: flush, wait for the last text, store the leg's end."""
        tail = self.audio.finish()
        for chunk in self.audio.chunks_ready():  # completed by the resampler's flush
            self._send_chunk(chunk)
        if tail and self.client.failure:
            self._extend_gap(self._position, len(tail) // 2, self.client.failure)
        elif tail:
            if self.paused:
                tail = self._censor(tail, self._position)
            self.client.send_audio(tail, speech=not self.paused and not self._quiet(tail))
        self.client.end()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._task
            except TimeoutError:
                self.log.error("ASR did not finish within %s s; closing the leg", timeout_s)
                self.stream.fail(f"ASR did not finish within {timeout_s} s")
                for event in self.stream.events_received():
                    self._on_event(event)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        for segment in self.assembler.finish():
            self._publish(segment)
        for segment in self.redactor.finish():
            self._store(segment)
        self._flush_gap()
        self._set_lagging(False)
        LIVE.discard(self)
        COUNTERS.samples_dropped += self.audio.samples_dropped
        samples = self.audio.samples_out
        await self.store.end_leg(
            self.info.leg_id,
            ended_at_ms=int(time.time() * 1000),
            duration_ms=samples_to_ms(samples),
        )
        return LegResult(
            leg_id=self.info.leg_id,
            samples=samples,
            segments_final=self._finals,
            gaps_ms=samples_to_ms(self._gap_samples),
            generations=self._generations,
            failure=self.client.failure,
        )

    # -- ASR events ----------------------------------------------------------------------------

    def _on_event(self, event: AsrEvent | OpenAiEvent) -> None:
        for segment in self.assembler.receive(event):
            self._publish(segment)
        match event:
            case StepText():
                COUNTERS.deltas += 1
                if event.text:
                    self._rut.text()
                if event.frame_end > event.frame_start:  # not a right-padding step
                    self._measure_step_lag(event.frame_start + self._first_step)
                    self._waiting_since = None
                    self._check_lag(self._clock())
            case TurnCompleted():
                self._generations += 1
            case GenerationEnded():
                self._generations += 1
                self._put_event(
                    event.start,
                    "asr.generation",
                    f"generation={event.generation} samples={event.samples} steps={event.steps}"
                    f" completion_tokens={event.completion_tokens} solicited={event.solicited}",
                )
                if not event.solicited:
                    self.log.warning(
                        "ASR generation %d ended early after %d steps; continuing on a new one",
                        event.generation,
                        event.steps,
                    )
            case AudioDropped():
                self._extend_gap(event.start, event.samples, event.reason)
            case SessionStarted():
                self._flush_gap()
                backend = self.client.backend.name
                self.log.info("ASR session %s on %s", event.session_id, backend)
                if self._backend not in (None, backend):
                    replay_ms = samples_to_ms(self.client.replayed_samples)
                    self._put_event(
                        self.stream.samples_received,
                        "asr.failover",
                        f"from={self._backend} to={backend} replay_ms={replay_ms}",
                    )
                self._backend = backend
                self._put_event(self.stream.samples_received, "asr.session", event.session_id)
            case ServerError():
                self._put_event(
                    self.stream.samples_received, "asr.error", f"{event.error.code}: {event.error}"
                )
            case Closed():
                self._flush_gap()
                self.log.info("ASR stream closed: %s", event.reason)

    def _record_rut(self) -> None:
        seconds = self._rut.fired() / ASR_SAMPLE_RATE_HZ
        self.log.warning(
            "ASR returned no text over %.1f s of speech (the blank-token rut, vLLM #47614); "
            "continuing on a new generation",
            seconds,
        )
        self._put_event(self.stream.samples_received, "asr.rut", f"speech_s={seconds:.1f}")

    def _check_lag(self, now: float) -> None:
        """Lagging when the last step came, or the next is awaited, more than the bound after
        its audio (a server that stops stepping shows no step lag at all: hence the wait)."""
        bound = self.settings.max_step_lag_ms
        if not bound:
            return
        lag = self.step_lag_ms or 0.0
        if self._waiting_since is not None and self.stream.state is AsrState.STREAMING:
            lag = max(lag, (now - self._waiting_since) * 1000)
        if not self.lagging and lag > bound:
            self._set_lagging(True)
            self.log.warning(
                "ASR text is %.0f ms behind the audio (bound %.0f ms): the server is not keeping "
                "up; new calls are refused until it is",
                lag,
                bound,
            )
            self._put_event(self.stream.samples_received, "asr.lagging", f"lag_ms={lag:.0f}")
        elif self.lagging and lag <= bound / 2:
            self._set_lagging(False)
            self.log.info("ASR caught up (text %.0f ms behind the audio)", lag)
            self._put_event(self.stream.samples_received, "asr.caught_up", f"lag_ms={lag:.0f}")

    def _set_lagging(self, lagging: bool) -> None:
        """Counted on the server it lags on (the pool places no new leg there), until it catches
        up or ends - wherever the leg runs by then."""
        if lagging == self.lagging:
            return
        self.lagging = lagging
        if lagging:
            self._lagging_on = self.client.backend
            self._lagging_on.lagging += 1
        elif self._lagging_on is not None:
            self._lagging_on.lagging -= 1
            self._lagging_on = None
        LIVE.changed()

    def _measure_step_lag(self, needed: int) -> None:
        """The step for audio up to ``needed`` samples came now: how long after that audio?"""
        sent = self._sent_at
        while sent and sent[0][0] < needed:  # chunks before the one that completed the step
            sent.popleft()
        if sent:
            self.step_lag_ms = (self._clock() - sent[0][1]) * 1000

    def _extend_gap(self, start: int, samples: int, reason: str) -> None:
        """Contiguous drops (one per 80 ms chunk while the server is away) make one gap."""
        self._gap_samples += samples
        gap = self._open_gap
        if gap is not None and gap[0] + gap[1] == start and gap[2] == reason:
            self._open_gap = (gap[0], gap[1] + samples, reason)
            return
        self._flush_gap()
        self._open_gap = (start, samples, reason)

    def _flush_gap(self) -> None:
        if self._open_gap is None:
            return
        start, samples, reason = self._open_gap
        self._open_gap = None
        gap = Gap(
            self.info.call_id,
            self.info.leg_id,
            samples_to_ms(start),
            samples_to_ms(samples),
            reason,
        )
        self.log.warning("gap of %d ms at %d ms: %s", gap.duration_ms, gap.start_ms, reason)
        self.store.put_gap(gap)
        if self.listener:
            self.listener(self.info, gap)

    def _publish(self, segment: Segment) -> None:
        """A revision from the assembler: out once redacted (maybe later, maybe cut)."""
        for redacted in self.redactor.receive(segment):
            self._store(redacted)

    def _store(self, segment: Segment) -> None:
        if segment.final:
            self._finals += 1
        self.store.put_segment(segment)
        if self.listener:
            self.listener(self.info, segment)

    def _put_event(self, at_samples: int, kind: str, detail: str) -> None:
        self.store.put_event(
            LegEvent(self.info.call_id, self.info.leg_id, samples_to_ms(at_samples), kind, detail)
        )
