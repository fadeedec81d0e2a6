"""A ``b2bua`` side's audio, tapped in pjsua's conference bridge (docs/pjsua2.md §2, §4.2)."""

from __future__ import annotations

import logging
from typing import Any

import pjsua2 as pj

from bridge.sip import wire
from bridge.sip.pjnative import frame_bytes

from .outbox import Outbox

logger = logging.getLogger("bridge.sip.worker")


class TapPort(pj.AudioMediaPort):  # type: ignore[misc]
    """Receives the remote party's decoded audio at ``rate_hz`` and hands it over.

    The conference clock ticks a port until its C++ object is gone, which happens after Python
    has already cleared the object's attributes (seen once in 40 calls ending together).  So a
    tap is ``closed`` when its call ends, and the class-level ``closed = True`` is what such a
    half-destroyed tap reads: either way the tick is ignored.
    """

    closed = True

    def __init__(self, outbox: Outbox, key: int, rate_hz: int) -> None:
        super().__init__()
        self.outbox = outbox
        self.key = key
        self.rate_hz = rate_hz
        self.frame_samples = rate_hz // 50  # 20 ms conference ticks
        self.position = 0
        self.dropped = 0
        self.header = wire.FRAME_HEADER.pack
        self.silence = bytes(2 * self.frame_samples)
        self.closed = False

    def create(self, name: str) -> TapPort:
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = self.rate_hz
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        self.createPort(name, fmt)
        return self

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - 'clock' thread, every 20 ms
        if self.closed:
            return
        try:
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                pcm = frame_bytes(frame.buf)
            else:  # no audio this tick (hold, inactive stream): the leg hears silence, live
                pcm = self.silence
            try:
                self.outbox.send(self.header(wire.KIND_FRAME, self.key, self.position) + pcm)
            except BlockingIOError:
                self.dropped += 1
            except OSError:
                self.outbox.broken = True
            self.position = (self.position + len(pcm) // 2) & 0xFFFFFFFF
        except Exception:  # P2: nothing may escape a pjsua callback
            logger.exception("tap %d: frame callback failed", self.key)

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 - we never send audio
        frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
