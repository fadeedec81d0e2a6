"""``bridge transcribe``: recorded calls through the same leg pipeline as live ones.

A mono file is one leg; a stereo file is two legs, left and right channel, as call-center
recorders write them.  Files are fed either at real-time pace (20 ms frames on the wall clock,
exactly like a live call) or as fast as the server allows: the leg keeps at most
``window_s`` of audio ahead of the server's steps, so the server's queue stays bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.asr.pool import AsrTarget
from bridge.call import Call, EndCause, TranscriptSink
from bridge.core.audio import LegAudio
from bridge.core.types import (
    ASR_SAMPLE_RATE_HZ,
    CallId,
    CallInfo,
    LegRole,
    LegSource,
    roles_from_text,
)
from bridge.errors import AsrConnectionError, ConfigError
from bridge.files.reader import AudioFile
from bridge.leg import LegResult, LegSettings, Listener

FRAME_MS = 20
DEFAULT_ROLES = (LegRole.CALLER, LegRole.AGENT)  # left, right


def parse_roles(text: str) -> tuple[LegRole, ...]:
    """``"agent,customer"`` -> roles for channels left, right."""
    try:
        return roles_from_text(text, example="--roles caller,agent")
    except ValueError as exc:
        raise ConfigError(f"--roles: {exc}") from None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a transcription is, for the terminal."""

    position_ms: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class FileResult:
    call_id: CallId
    legs: list[LegResult]


async def transcribe_file(
    audio: AudioFile,
    *,
    endpoint: AsrTarget,
    store: TranscriptSink,
    settings: LegSettings,
    fast: bool,
    roles: Sequence[LegRole] = DEFAULT_ROLES,
    listener: Listener | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    window_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    stop: asyncio.Event | None = None,
    stop_cause: Callable[[], str] | None = None,
    call_id: CallId | None = None,
    title: str | None = None,
) -> FileResult:
    """Transcribe one file into a new call; returns its id and per-leg results.

    ``call_id``: a call the caller stored already (an upload that waited in a queue); else a new
    one is stored.  ``title`` names the call and its legs (default: the file's name).  When
    ``stop`` is set the call ends with ``stop_cause()`` (default ``interrupted``).

    Raises:
        AsrConnectionError: the ASR server failed for good; what was transcribed is stored.
    """
    now_ms = int(time.time() * 1000)
    title = audio.path.name if title is None else title
    info = CallInfo(call_id or CallId(uuid.uuid4().hex), LegSource.FILE, now_ms, title=title)
    call = Call(info, store, endpoint=endpoint, settings=settings, listener=listener)
    if call_id is None:  # else the caller stored it already (an upload that waited)
        await call.open()
    call_id = call.call_id
    legs = []
    for channel in range(audio.channels):
        if audio.channels == 1:
            role, label = (roles[0] if len(roles) == 1 else LegRole.SPEAKER), "mono"
        else:
            role = roles[channel] if channel < len(roles) else LegRole.UNKNOWN
            label = ("left", "right")[channel]
        codec = f"{audio.encoding.value}/{audio.sample_rate_hz}"
        leg_audio = LegAudio(audio.sample_rate_hz, audio.encoding)
        legs.append(
            await call.add_leg(
                role, f"{label} channel of {title}", codec, leg_audio, started_at_ms=now_ms
            )
        )

    try:
        frame_samples = audio.sample_rate_hz * FRAME_MS // 1000
        window = int(window_s * ASR_SAMPLE_RATE_HZ)
        started = clock()
        fed_ms = 0
        async for block in audio.stream_blocks(frame_samples):  # read off the loop
            for leg, payload in zip(legs, block, strict=True):
                leg.receive_frame(payload)
            fed_ms += FRAME_MS
            if fast:
                if fed_ms % 1000 == 0:  # look at the window once a second of audio
                    await asyncio.gather(*(leg.client.wait_for_window(window) for leg in legs))
            else:
                # Live pace: never faster than a call would deliver the audio.
                delay = started + fed_ms / 1000 - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            if on_progress and fed_ms % 200 == 0:
                on_progress(Progress(fed_ms, audio.duration_ms))
            if all(leg.client.failure for leg in legs) or (stop is not None and stop.is_set()):
                break
        results = list(await call.finish(timeout_s=120))
    except asyncio.CancelledError:
        # Cancelled, not stopped (``stop`` ends the call cleanly): leave no ASR task behind.
        await call.abort()
        raise
    failures = [r.failure for r in results if r.failure]
    cause: str = EndCause.COMPLETED
    if failures:
        cause = EndCause.ASR_FAILED
    elif stop is not None and stop.is_set():
        cause = stop_cause() if stop_cause is not None else EndCause.INTERRUPTED
    await call.close(cause)
    await store.flush()
    if on_progress:
        on_progress(Progress(audio.duration_ms, audio.duration_ms))
    if failures:
        raise AsrConnectionError(
            f"{failures[0]} (call {call_id}: what was transcribed before is stored)",
            retryable=False,
        )
    return FileResult(call_id, results)
