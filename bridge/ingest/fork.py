"""What every media fork shares: streams joined into calls by a correlation key, channels
into legs with roles, pauses and drops kept on the leg clock, one end per call.

A media fork (Asterisk AudioSocket, FreeSWITCH mod_audio_stream, Twilio Media Streams, ...)
opens one connection per stream; a stream carries one channel (AudioSocket, a Twilio track) or
several interleaved ones (FreeSWITCH ``stereo``).  Connections that carry the same key (the
AudioSocket UUID, the FreeSWITCH channel uuid, the Twilio call SID) are one call::

    calls = ForkCalls(sink, endpoint=..., settings=..., listener=...)
    stream = await calls.join(LegSource.ASTERISK, key, ForkFormat(8000, PCM16, 1),
                              roles=None, title=..., metadata={...})
    stream.feed(payload)            # interleaved frames of the announced format
    stream.dtmf("5")
    await stream.leave(EndCause.HANGUP)

A call ends once its last stream left.  A stream that *dropped* (no hangup, no stop) gives its
call ``rejoin_s`` to come back: a new connection with the same key and roles continues the same
legs, the time it was away filled with silence so words keep their times; otherwise the call
ends ``disconnected``.  Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge.asr.pool import AsrTarget
from bridge.call import Call, TranscriptSink
from bridge.core.audio import SUPPORTED_SAMPLE_RATES_HZ, LegAudio
from bridge.core.types import AudioEncoding, EndCause, Gap, LegInfo, LegRole, LegSource, Segment
from bridge.errors import RemoteProtocolError
from bridge.leg import Leg, LegSettings, Listener, capacity_problem

logger = logging.getLogger(__name__)

# Audio later than the wall clock by more than this is a pause or stall: the time goes in as
# silence, all but KEEP_S (network jitter and a burst after it keep their own timing).
CATCH_UP_S = 1.0
KEEP_S = 0.2
# How often a call whose PBX sends nothing (a pause, a stall) has that time put in as silence:
# its ASR session is fed in real time instead of held idle (vLLM #46815 pins an idle session's
# KV cache) and then flooded with the whole pause at once when audio comes again.
KEEP_UP_S = 0.5
Tap = Callable[[LegInfo, Segment | Gap], None]
# Roles given to single-channel streams of one call in the order they join.
JOIN_ORDER = (LegRole.CALLER, LegRole.CALLEE)


class ForkRefused(RemoteProtocolError):
    """A stream the bridge does not take now: ``busy`` (ASR capacity) or ``conflict``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, status_hint=503 if reason == "busy" else 409)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ForkFormat:
    """The audio of one stream: rate, encoding and interleaved channels per frame."""

    rate_hz: int
    encoding: AudioEncoding
    channels: int = 1

    def __post_init__(self) -> None:
        if self.rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
            rates = ", ".join(str(rate) for rate in SUPPORTED_SAMPLE_RATES_HZ)
            raise RemoteProtocolError(f"audio at {self.rate_hz} Hz: the bridge takes {rates} Hz")
        if not 1 <= self.channels <= 2:
            raise RemoteProtocolError(f"{self.channels} audio channels: the bridge takes 1 or 2")

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample across every channel (a frame's size is a multiple of it)."""
        return self.encoding.bytes_per_sample * self.channels

    @property
    def codec(self) -> str:
        return f"{self.encoding.value}/{self.rate_hz}"


@dataclass(slots=True, eq=False)
class _ForkCall:
    call: Call
    legs: dict[LegRole, Leg] = field(default_factory=dict)
    streams: set[ForkStream] = field(default_factory=set)
    left_at: dict[LegRole, float] = field(default_factory=dict)  # when its stream left
    ending: asyncio.TimerHandle | None = None


class ForkStream:
    """One connection's channels, each fed to its leg."""

    def __init__(self, calls: ForkCalls, entry: _ForkCall, fmt: ForkFormat, legs: list[Leg]):
        self._calls = calls
        self._entry = entry
        self.format = fmt
        self.legs = legs
        self.call = entry.call
        self.paused_at: float | None = None
        self.bytes_in = 0
        self.taps: list[Tap] = []
        self.started_at = time.monotonic()
        self._samples = 0  # per channel, received or filled
        self._positioned = False  # fed by the peer's timestamps (feed_at): its clock decides
        self._stalled = False  # nothing came for CATCH_UP_S: the time is being filled
        self._width = fmt.encoding.bytes_per_sample
        self._frame_bytes = fmt.frame_bytes
        self._rate = fmt.rate_hz
        self._dtype = np.dtype(f"V{self._width}")
        self._origins = [leg.audio.next_position for leg in legs]  # where this stream began

    def feed(self, payload: bytes) -> None:
        """Interleaved audio of this stream's format (a partial sample frame is an error).

        A stream is real time: when audio arrives more than :data:`CATCH_UP_S` after the wall
        clock says it should (the PBX paused the fork without saying so, or stalled), the
        missing time goes in as silence first, so later words keep their times.
        """
        if self.paused_at is not None:
            self.resume()
        size = len(payload)
        frame_bytes = self._frame_bytes
        if size % frame_bytes:
            raise RemoteProtocolError(
                f"{size} bytes of audio are not whole {self.format.channels}-channel "
                f"{self.format.codec} samples ({frame_bytes} bytes each)"
            )
        self.keep_up()
        self._stalled = False
        self.bytes_in += size
        self._samples += size // frame_bytes
        if len(self.legs) == 1:
            self.legs[0].receive_frame(payload)
            return
        samples = np.frombuffer(payload, dtype=self._dtype).reshape(-1, len(self.legs))
        for channel, leg in enumerate(self.legs):
            leg.receive_frame(samples[:, channel].tobytes())

    def feed_at(self, payload: bytes, position: int, *, channel: int = 0) -> None:
        """One channel's audio at ``position``: its first sample, counted from this stream's
        start (the peer's own timestamps, e.g. Twilio's ``media.timestamp``).  A later position
        than the leg reached is filled with silence, audio it already has is dropped
        (:meth:`LegAudio.receive_frame`), so the peer's clock places every word."""
        if self.paused_at is not None:
            self.resume(position)
        self._positioned = True
        if len(payload) % self._width:
            raise RemoteProtocolError(
                f"{len(payload)} bytes of audio are not whole {self.format.codec} samples"
            )
        self.bytes_in += len(payload)
        self.legs[channel].receive_frame(payload, self._origins[channel] + position)

    def dtmf(self, digit: str, *, channel: int = 0) -> None:
        leg = self.legs[channel]
        at_ms = leg.audio.samples_out // 16
        self.call.dtmf(leg, digit, f"digit={digit}", at_ms, 0)

    def pause(self) -> None:
        """The peer stopped sending on purpose (a payment step): the time is kept as silence,
        and the call is paused (a ``paused`` gap, nothing transcribed) until it resumes."""
        if self.paused_at is None:
            self.paused_at = time.monotonic()
            self.call.event("fork.pause", "")
            self.call.pause("fork")

    def resume(self, position: int | None = None) -> None:
        """Audio comes again.  The time paused goes in as silence while the call is still
        paused, so each leg's ``paused`` gap covers it, then the call resumes.  ``position``:
        where the peer's clock says the audio goes on (:meth:`feed_at`), else the wall clock
        (all but :data:`KEEP_S`, as :meth:`keep_up` fills)."""
        if self.paused_at is None:
            return
        if position is not None:
            for origin, leg in zip(self._origins, self.legs, strict=True):
                missing = origin + position - leg.audio.next_position
                if missing > 0:
                    leg.receive_silence(missing)
        elif not self._positioned:
            behind = int((time.monotonic() - self.started_at) * self._rate) - self._samples
            if behind > KEEP_S * self._rate:
                self._fill(behind - KEEP_S * self._rate)
        self.paused_at = None
        self.call.event("fork.resume", "")
        self.call.resume("fork")

    def keep_up(self) -> None:
        """Audio later than the wall clock by more than :data:`CATCH_UP_S` (a pause, a stall):
        that time goes in as silence, all but :data:`KEEP_S`, and from then on all but KEEP_S
        again on every call until audio comes.  Called on every frame, and every
        :data:`KEEP_UP_S` by :class:`ForkCalls`.  A stream placed by the peer's own timestamps
        is left to them."""
        if self._positioned:
            return
        rate = self._rate
        behind = int((time.monotonic() - self.started_at) * rate) - self._samples
        if behind > CATCH_UP_S * rate or (self._stalled and behind > KEEP_S * rate):
            self._fill(behind - KEEP_S * rate)
            self._stalled = True

    def silence(self, seconds: float) -> None:
        """Audio the peer says it dropped (AudioHook ``discarded``): the time goes in as
        silence on every channel, so later words keep their times.  Never more than the
        stream is behind the wall clock: a peer cannot have dropped audio from the future."""
        rate = self.format.rate_hz
        behind = (time.monotonic() - self.started_at) * rate - self._samples
        if seconds > 0 and behind >= 1:
            self._fill(min(seconds * rate, behind))

    def _fill(self, samples: float) -> None:
        n = int(samples)
        self._samples += n
        for leg in self.legs:
            leg.receive_silence(n)

    async def leave(self, cause: EndCause) -> None:
        """This connection ended: the call ends with it when no other stream is left."""
        await self._calls.leave(self._entry, self, cause)


class ForkCalls:
    """The media-fork calls that are up, by ``(source, key)``."""

    def __init__(
        self,
        sink: TranscriptSink,
        *,
        endpoint: AsrTarget,
        settings: LegSettings | None = None,
        listener: Listener | None = None,
        rejoin_s: float = 5.0,
        finish_timeout_s: float = 30.0,
    ) -> None:
        self.sink = sink
        self.endpoint = endpoint
        self.settings = settings
        self.listener = listener
        self.rejoin_s = rejoin_s
        self.finish_timeout_s = finish_timeout_s
        self._calls: dict[tuple[LegSource, str], _ForkCall] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._taps: dict[str, list[Tap]] = {}  # call id -> streams that want its text back
        # One lock per call key while joins are waiting (weakly held: gone when unused).
        self._joining: weakref.WeakValueDictionary[tuple[LegSource, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._keeping_up: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._calls)

    async def join(
        self,
        source: LegSource,
        key: str,
        fmt: ForkFormat,
        *,
        roles: Sequence[LegRole] | None = None,
        title: str = "",
        metadata: Mapping[str, object] | None = None,
        labels: Sequence[str] | None = None,
    ) -> ForkStream:
        """A new connection for call ``key``: its channels become legs (``roles`` one per
        channel; ``None``: the next side of :data:`JOIN_ORDER` not streaming now).  Joins of
        one call are taken one at a time.

        Raises:
            ForkRefused: ``busy`` when ASR capacity is full; ``conflict`` when a live stream
                of this call already carries one of these roles.
            RemoteProtocolError: the stream does not fit the call (channels, format).
        """
        lock = self._joining.get((source, key))
        if lock is None:
            lock = self._joining[(source, key)] = asyncio.Lock()
        async with lock:
            return await self._join(source, key, fmt, roles, title, metadata, labels)

    async def _join(
        self,
        source: LegSource,
        key: str,
        fmt: ForkFormat,
        roles: Sequence[LegRole] | None,
        title: str,
        metadata: Mapping[str, object] | None,
        labels: Sequence[str] | None,
    ) -> ForkStream:
        entry = self._calls.get((source, key))
        live = {role for s in entry.streams for role in _roles(s)} if entry else set()
        if roles is None:
            free = [role for role in JOIN_ORDER if role not in live]
            if not free:
                raise ForkRefused(f"call {key}: both sides are streaming", reason="conflict")
            roles = (free[0],)
        if len(roles) != fmt.channels:
            raise RemoteProtocolError(f"{fmt.channels} channel(s) but {len(roles)} role(s)")
        busy = live & set(roles)
        if busy:
            names = ", ".join(sorted(r.value for r in busy))
            raise ForkRefused(f"call {key}: {names} already streaming", reason="conflict")
        known = entry.legs if entry else {}
        for role in roles:
            leg = known.get(role)
            if leg is not None and (
                leg.audio.in_rate_hz != fmt.rate_hz or leg.audio.encoding is not fmt.encoding
            ):
                raise RemoteProtocolError(
                    f"call {key}: the {role.value} leg is {leg.info.codec}, the new stream "
                    f"{fmt.codec}"
                )
        new_legs = len([role for role in roles if role not in known])
        full = capacity_problem(self.endpoint, new_legs) if new_legs else None
        if full:
            raise ForkRefused(f"{full}; try again later", reason="busy")
        if entry is None:
            call = Call.new(
                source,
                self.sink,
                endpoint=self.endpoint,
                title=title or key,
                settings=self.settings,
                listener=self._listen,
            )
            await call.open()
            entry = self._calls[(source, key)] = _ForkCall(call)
            call.log.info("%s call %s started", source.value, key)
            if metadata:
                call.event(f"{source.value}.start", json.dumps(metadata, ensure_ascii=False))
        if entry.ending is not None:  # came back after a drop: the call goes on
            entry.ending.cancel()
            entry.ending = None
        try:
            legs = [
                await self._leg(entry, role, fmt, labels[i] if labels and i < len(labels) else "")
                for i, role in enumerate(roles)
            ]
        except BaseException:
            if not entry.streams:  # nothing else will end it
                self._end_later(entry, EndCause.ERROR)
            raise
        stream = ForkStream(self, entry, fmt, legs)
        entry.streams.add(stream)
        if self._keeping_up is None:
            self._keep_up()
        return stream

    def _keep_up(self) -> None:
        """Every :data:`KEEP_UP_S` while calls are up: :meth:`ForkStream.keep_up` each stream."""
        self._keeping_up = None
        if not self._calls:
            return
        for entry in list(self._calls.values()):
            for stream in list(entry.streams):
                try:
                    stream.keep_up()
                except Exception:  # one call's failure must not stop the others' clocks
                    entry.call.log.exception("keeping the stream's clock failed")
        self._keeping_up = asyncio.get_running_loop().call_later(KEEP_UP_S, self._keep_up)

    async def _leg(self, entry: _ForkCall, role: LegRole, fmt: ForkFormat, label: str) -> Leg:
        """The call's leg for ``role``: a new one, or the one a dropped stream left."""
        leg = entry.legs.get(role)
        if leg is None:
            leg = await entry.call.add_leg(
                role, label or role.value, fmt.codec, LegAudio(fmt.rate_hz, fmt.encoding)
            )
            entry.legs[role] = leg
        left_at = entry.left_at.pop(role, None)
        if left_at is not None:  # the time it was away is silence: words keep their times
            away = time.monotonic() - left_at
            leg.receive_silence(int(away * fmt.rate_hz))
            entry.call.event("fork.rejoin", f"{role.value} after {away:.1f} s")
        return leg

    def _listen(self, info: LegInfo, item: Segment | Gap) -> None:
        if self.listener is not None:
            self.listener(info, item)
        for tap in self._taps.get(info.call_id, ()):
            try:
                tap(info, item)
            except Exception:  # a peer that went away must not fail the leg
                logger.exception("call %s: sending text back to the peer failed", info.call_id)

    def tap(self, stream: ForkStream, tap: Tap) -> None:
        """``tap(leg, segment)`` for every segment of ``stream``'s call until it leaves."""
        self._taps.setdefault(stream.call.call_id, []).append(tap)
        stream.taps.append(tap)

    async def leave(self, entry: _ForkCall, stream: ForkStream, cause: EndCause) -> None:
        entry.streams.discard(stream)
        taps = self._taps.get(stream.call.call_id, [])
        for tap in stream.taps:
            taps.remove(tap)
        if not taps:
            self._taps.pop(stream.call.call_id, None)
        now = time.monotonic()
        for role in _roles(stream):
            entry.left_at[role] = now
        if entry.streams:
            return
        if cause is EndCause.DISCONNECTED and self.rejoin_s > 0:
            entry.ending = asyncio.get_running_loop().call_later(
                self.rejoin_s, self._end_later, entry, cause
            )
            entry.call.log.warning(
                "the stream dropped without a hangup; waiting %.0f s for it to come back",
                self.rejoin_s,
            )
            return
        await self._end(entry, cause)

    def _end_later(self, entry: _ForkCall, cause: EndCause) -> None:
        task = asyncio.create_task(self._end(entry, cause))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _end(self, entry: _ForkCall, cause: EndCause) -> None:
        key = next((k for k, v in self._calls.items() if v is entry), None)
        if key is not None:
            del self._calls[key]
        await entry.call.close(cause, finish_timeout_s=self.finish_timeout_s)

    async def close(self) -> None:
        """The bridge stops: every call ends ``shutdown``."""
        if self._keeping_up is not None:
            self._keeping_up.cancel()
            self._keeping_up = None
        for entry in list(self._calls.values()):
            if entry.ending is not None:
                entry.ending.cancel()
        await asyncio.gather(
            *(self._end(entry, EndCause.SHUTDOWN) for entry in list(self._calls.values())),
            *self._closing,
            return_exceptions=True,
        )


def _roles(stream: ForkStream) -> list[LegRole]:
    return [leg.info.role for leg in stream.legs]
