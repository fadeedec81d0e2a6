"""One call's lifecycle, the same for every source of audio (SIP, WebRTC, files).

A source adapter (``bridge/sip``, ``bridge/webrtc``, ``bridge/transcribe.py``) knows its
protocol; what a call *is* lives here, once::

    call = Call(CallInfo(...), sink, endpoint=endpoint, settings=settings)
    await call.open()                                   # stored, then published: call.started
    leg = await call.add_leg(LegRole.CALLER, "label", "pcmu/8000", LegAudio(8000, PCMU))
    leg.receive_frame(...)                              # the source feeds its legs
    call.event("sip.hold", "side=caller")               # a call event, stored and published
    call.dtmf(leg, "5", 160, at_ms)                     # a digit on a leg's clock
    call.pause("agent:alice"); call.resume("dtmf")      # a payment step: nothing transcribed
    await call.close(EndCause.BYE_REMOTE)               # legs finish (finals stored), call ends

Data flows one way: source -> call -> legs -> sink.  The *sink* is where a call's facts go: a
:class:`~storage.TranscriptStore`, or one wrapped so every fact is also published live
(:class:`bridge.live.tee.PublishingStore`).  A call ends once: a second ``close`` waits for
the first and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from typing import Protocol

from bridge.asr.pool import AsrTarget
from bridge.core.audio import LegAudio
from bridge.core.types import (
    CallId,
    CallInfo,
    EndCause,
    LegEvent,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    target_cause,
)
from bridge.leg import Leg, LegResult, LegSettings, LegSink, Listener
from bridge.log import leg_logger

logger = logging.getLogger(__name__)

__all__ = ["Call", "EndCause", "TranscriptSink", "live_call", "target_cause"]

#: The calls open in this process, by id (for the REST pause/resume; weakly held).
_LIVE: weakref.WeakValueDictionary[str, Call] = weakref.WeakValueDictionary()


def live_call(call_id: str) -> Call | None:
    """The call ``call_id`` if it is open here and has not ended."""
    call = _LIVE.get(call_id)
    return call if call is not None and call.cause is None else None


class TranscriptSink(LegSink, Protocol):
    """Where a call's facts go (``storage.TranscriptStore``, or one that also publishes)."""

    async def add_call(self, call: CallInfo) -> None: ...

    async def add_leg(self, leg: LegInfo) -> None: ...

    async def end_call(self, call_id: str, *, ended_at_ms: int, cause: str) -> None: ...

    def put_dtmf(self, event: LegEvent, digit: str, duration_ms: int) -> None: ...

    async def flush(self) -> None: ...  # once everything queued before is committed


def now_ms() -> int:
    return int(time.time() * 1000)


class Call:
    """One call: stored when opened, legs added with their roles, ended once with a cause."""

    def __init__(
        self,
        info: CallInfo,
        sink: TranscriptSink,
        *,
        endpoint: AsrTarget,
        settings: LegSettings | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.info = info
        self.sink = sink
        self.endpoint = endpoint
        self.settings = settings
        self.listener = listener
        self.legs: list[Leg] = []
        self.results: list[LegResult] = []
        self.cause: str | None = None
        self.ended = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._finishing: asyncio.Task[list[LegResult]] | None = None
        self.log = leg_logger(logger, info.call_id, "-", info.source.value)
        self.paused = False  # a payment step: nothing of the call is transcribed (pause)
        self._keys = ""  # the last DTMF keys, to see pause_keys / resume_keys

    @classmethod
    def new(
        cls,
        source: LegSource,
        sink: TranscriptSink,
        *,
        endpoint: AsrTarget,
        title: str = "",
        agent: str | None = None,
        call_id: CallId | None = None,
        settings: LegSettings | None = None,
        listener: Listener | None = None,
    ) -> Call:
        """A call starting now with a new id (or ``call_id``)."""
        info = CallInfo(
            call_id or CallId(uuid.uuid4().hex), source, now_ms(), title=title, agent=agent
        )
        return cls(info, sink, endpoint=endpoint, settings=settings, listener=listener)

    @property
    def call_id(self) -> CallId:
        return self.info.call_id

    async def open(self) -> None:
        """Store the call (published once stored)."""
        await self.sink.add_call(self.info)
        _LIVE[self.call_id] = self

    async def add_leg(
        self,
        role: LegRole,
        label: str,
        codec: str,
        audio: LegAudio,
        *,
        started_at_ms: int | None = None,
    ) -> Leg:
        """A new leg of this call: stored, and its ASR session started."""
        info = LegInfo(
            self.call_id,
            LegId(uuid.uuid4().hex),
            role,
            label,
            codec,
            self.info.source,
            started_at_ms if started_at_ms is not None else now_ms(),
        )
        await self.sink.add_leg(info)
        leg = Leg(
            info,
            audio,
            self.endpoint,
            self.sink,
            settings=self.settings,
            listener=self.listener,
        )
        leg.start()
        if self.paused:
            leg.pause()
        self.legs.append(leg)
        return leg

    def event(self, kind: str, detail: str, *, at_ms: int | None = None) -> None:
        """A call event (``sip.hold``, ``siprec.metadata``, ...) at wall-clock ``at_ms``."""
        self.sink.put_event(
            LegEvent(self.call_id, None, at_ms if at_ms is not None else now_ms(), kind, detail)
        )

    def dtmf(self, leg: Leg, digit: str, detail: str, at_ms: int, duration_ms: int) -> None:
        """A DTMF digit on ``leg``'s clock (``at_ms``): stored as a ``dtmf`` event, published -
        as ``*`` unless the redaction policy keeps digits."""
        policy = leg.settings.redaction
        self._keys = (self._keys + digit)[-8:]
        if policy.resume_keys and self._keys.endswith(policy.resume_keys):
            self.resume("dtmf")
        elif policy.pause_keys and self._keys.endswith(policy.pause_keys):
            self.pause("dtmf")
        if self.paused:
            return  # nothing of a paused call is stored, keys included
        digit, detail = policy.dtmf_digit(digit, detail)
        event = LegEvent(self.call_id, leg.info.leg_id, at_ms, "dtmf", detail)
        self.sink.put_dtmf(event, digit, duration_ms)

    def pause(self, by: str) -> bool:
        """A payment step (PCI DSS): until :meth:`resume`, nothing of the call is transcribed,
        stored or pushed - each leg's audio stays in the bridge, its span a ``paused`` gap.
        ``by``: who asked (``agent:alice``, ``dtmf``, ``fork``); returns whether it changed."""
        if self.paused:
            return False
        self.paused = True
        for leg in self.legs:
            leg.pause()
        self.event("call.paused", f"by={by}")
        self.log.info("paused by %s", by)
        return True

    def resume(self, by: str) -> bool:
        """Transcribe again after :meth:`pause`; returns whether it changed."""
        if not self.paused:
            return False
        self.paused = False
        for leg in self.legs:
            leg.resume()
        self.event("call.resumed", f"by={by}")
        self.log.info("resumed by %s", by)
        return True

    def end(self, cause: EndCause | str, *, finish_timeout_s: float = 60.0) -> None:
        """End the call once (later causes are ignored); returns at once."""
        if self._closing is None:
            self.cause = str(cause)
            self._closing = asyncio.create_task(
                self._close(finish_timeout_s), name=f"call-end-{self.call_id[:8]}"
            )

    async def close(self, cause: EndCause | str, *, finish_timeout_s: float = 60.0) -> None:
        """End the call (once) and wait until its legs finished and its end is stored."""
        self.end(cause, finish_timeout_s=finish_timeout_s)
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def finish(self, *, timeout_s: float = 60.0) -> list[LegResult]:
        """Finish every leg once (its last text stored); later calls wait for the first.

        A source that needs the legs' results to choose its end cause (a file whose ASR
        failed ends ``asr-failed``) calls this before :meth:`close`.
        """
        if self._finishing is None:
            self._finishing = asyncio.create_task(self._finish_legs(timeout_s))
        return await asyncio.shield(self._finishing)

    async def _finish_legs(self, timeout_s: float) -> list[LegResult]:
        results = await asyncio.gather(
            *(leg.finish(timeout_s=timeout_s) for leg in self.legs),
            return_exceptions=True,
        )
        for leg, result in zip(self.legs, results, strict=True):
            if isinstance(result, BaseException):
                leg.log.error("the leg did not finish cleanly: %s", result)
                continue
            self.results.append(result)
            leg.log.info(
                "leg finished: %d ms, %d final segment(s)%s",
                result.samples // 16,
                result.segments_final,
                f", ASR failed: {result.failure}" if result.failure else "",
            )
        return self.results

    async def _close(self, finish_timeout_s: float) -> None:
        await self.finish(timeout_s=finish_timeout_s)
        assert self.cause is not None
        await self.sink.end_call(self.call_id, ended_at_ms=now_ms(), cause=self.cause)
        self.log.info("call ended (%s)", self.cause)
        self.ended.set()

    async def abort(self) -> None:
        """The source's task was cancelled: stop every leg's ASR now, store nothing more."""
        await asyncio.gather(*(leg.abort() for leg in self.legs))
