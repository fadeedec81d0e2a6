"""Asterisk AudioSocket framing (sans-I/O): what ``AudioSocket()`` and ``chan_audiosocket`` send.

docs/media-forks.md §1: every message is a frame of 1 byte *kind*, 2 bytes payload length
(big-endian) and the payload.  Asterisk connects to us and sends, in order:

* ``0x01`` UUID: 16 bytes, the first frame (the id given in the dialplan);
* ``0x10`` audio: signed linear 16-bit, host order (little-endian on every platform Asterisk
  runs on), 8 kHz mono, 320 bytes per 20 ms; ``0x11``..``0x18`` the same at 12, 16, 24, 32, 44.1,
  48, 96 and 192 kHz (the numbering of ``res_audiosocket.h`` since SLIN12 was added; only
  ``chan_audiosocket``'s codec negotiation sends them, the dialplan application always sends 0x10);
* ``0x03`` DTMF: one ASCII digit;
* ``0x00`` hangup (no payload); ``0xFF`` error (an Asterisk error code byte, optional).

:class:`FrameReader` takes bytes as they arrive and returns whole frames; a stream that breaks
the framing raises :class:`~bridge.errors.RemoteProtocolError` and the reader is then closed.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Final

from bridge.errors import InvalidState, RemoteProtocolError

HEADER_BYTES: Final = 3
# The largest payload we take: 20 ms at 192 kHz is 7,680 bytes; Asterisk sends up to the
# channel's frame size.  The 16-bit length allows 65,535: anything above this is not audio.
MAX_PAYLOAD: Final = 16_384


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO_SLIN = 0x10
    ERROR = 0xFF


# Audio kinds -> sample rate (res_audiosocket.h, current numbering; docs/media-forks.md §1).
AUDIO_RATES: Final[dict[int, int]] = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    payload: bytes


class FrameReader:
    """Bytes in, whole frames out.  ``feed`` raises on a broken stream; no frame is lost."""

    __slots__ = ("_buffer", "_closed", "frames")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self.frames = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (a stream that ends here was truncated)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        if self._closed:
            raise InvalidState("FrameReader.feed after a protocol error")
        buffer: bytes | bytearray = self._buffer
        if buffer:
            self._buffer += data
        else:  # the usual case: the read starts on a frame; parse it in place, keep the rest
            buffer = data
        frames: list[Frame] = []
        start = 0
        while len(buffer) - start >= HEADER_BYTES:
            kind = buffer[start]
            length = (buffer[start + 1] << 8) | buffer[start + 2]
            if length > MAX_PAYLOAD:
                self._closed = True
                raise RemoteProtocolError(
                    f"AudioSocket frame of kind 0x{kind:02x} announces {length} bytes "
                    f"(more than {MAX_PAYLOAD})"
                )
            end = start + HEADER_BYTES + length
            if len(buffer) < end:
                break
            frames.append(Frame(kind, bytes(buffer[start + HEADER_BYTES : end])))
            start = end
        if buffer is data:
            self._buffer += data[start:]
        elif start:
            del self._buffer[:start]
        self.frames += len(frames)
        return frames


def read_uuid(frame: Frame) -> uuid.UUID:
    """The first frame's id (``0x01``, 16 bytes)."""
    if frame.kind != Kind.UUID:
        raise RemoteProtocolError(
            "AudioSocket: the first frame must be the UUID (kind 0x01), got kind "
            f"0x{frame.kind:02x}"
        )
    if len(frame.payload) != 16:
        raise RemoteProtocolError(
            f"AudioSocket: a UUID frame carries 16 bytes, got {len(frame.payload)}"
        )
    return uuid.UUID(bytes=frame.payload)


def audio_rate(kind: int) -> int | None:
    """The sample rate of an audio frame's kind, ``None`` if ``kind`` is not audio."""
    return AUDIO_RATES.get(kind)


def read_dtmf(frame: Frame) -> str:
    digit = frame.payload[:1].decode("ascii", "replace").upper()
    if len(frame.payload) != 1 or digit not in DTMF_DIGITS:
        raise RemoteProtocolError(
            f"AudioSocket: a DTMF frame carries one digit, got {frame.payload[:20]!r}"
        )
    return digit


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame on the wire (the peers in the tests and the fuzzer write with this)."""
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload
