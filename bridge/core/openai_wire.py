"""The OpenAI transcription session's frames and fields, as the ``openai`` package's typed
realtime models state them (:mod:`bridge.core.openai_protocol` is the session's logic)."""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr

from bridge.core import g711
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import AsrProtocolError

#: "Only a 24kHz sample rate is supported" for ``audio/pcm`` (RealtimeAudioFormats).
WIRE_RATE_HZ: Final = 24_000
#: The input formats (RealtimeAudioFormats): PCM16 at 24 kHz, or G.711 at 8 kHz.
PCM: Final = "audio/pcm"
PCMU: Final = "audio/pcmu"
PCMA: Final = "audio/pcma"
FORMATS: Final = (PCM, PCMU, PCMA)
#: A commit of less audio is refused (input_audio_buffer_commit_empty): carried to the next.
MIN_TURN_SAMPLES: Final = ASR_SAMPLE_RATE_HZ // 10
#: Renew a session after this much audio: "The maximum duration of a Realtime session is 60
#: minutes"; five minutes spare leave room for turns still in flight.
SESSION_RENEW_S: Final = 55 * 60
APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
COMMIT: Final = '{"type":"input_audio_buffer.commit"}'
CLEAR: Final = '{"type":"input_audio_buffer.clear"}'


class WireAudio:
    """The leg's 16 kHz PCM16 as the session's input format, one turn at a time.

    PCM: resampled to 24 kHz by a soxr stream, flushed at each turn's end, so a second on the
    leg clock is exactly 24 000 samples on the wire.  G.711: *passed through*, not resampled.
    An 8 kHz leg reaches 16 kHz through a half-band filter whose odd output samples are its input
    samples themselves (:mod:`bridge.core.halfband`), so the leg clock's odd samples, encoded
    again, are the bytes the phone sent, bit for bit (2.4 ms late, the filter's delay).
    """

    def __init__(self, wire: str) -> None:
        if wire not in FORMATS:
            raise ValueError(f"input format {wire!r}: expected one of {', '.join(FORMATS)}")
        self.wire = wire
        self._resampler: soxr.ResampleStream | None = None

    def encode(self, pcm: npt.NDArray[np.int16], first: int, *, last: bool) -> bytes:
        """Wire bytes for leg-clock samples ``first``..; ``last``: the turn ends with them."""
        if self.wire == PCMU:
            return g711.encode_ulaw(pcm[(first + 1) % 2 :: 2])
        if self.wire == PCMA:
            return g711.encode_alaw(pcm[(first + 1) % 2 :: 2])
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(
                ASR_SAMPLE_RATE_HZ, WIRE_RATE_HZ, 1, dtype="int16"
            )
        wire = self._resampler.resample_chunk(pcm, last=last)
        if last:
            self._resampler = None  # a turn's audio is complete: the next starts clean
        return bytes(wire.tobytes())

    def reset(self) -> None:
        """Forget the turn in progress (cleared, or its session lost)."""
        self._resampler = None


def audio_format(wire: str) -> dict[str, Any]:
    """The ``format`` object of an input format: only PCM names its rate."""
    return {"type": PCM, "rate": WIRE_RATE_HZ} if wire == PCM else {"type": wire}


def session_update(model: str, language: str | None, prompt: str | None, wire: str = PCM) -> str:
    """A transcription session: ``wire`` audio in, turn detection off ("the client must
    manually trigger"), noise reduction off (phone audio is already filtered)."""
    transcription: dict[str, Any] = {"model": model}
    if language:
        transcription["language"] = language
    if prompt:
        transcription["prompt"] = prompt
    session = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": audio_format(wire),
                "transcription": transcription,
                "turn_detection": None,
                "noise_reduction": None,
            }
        },
    }
    return json.dumps({"type": "session.update", "session": session})


def field_text(event: dict[str, Any], key: str) -> str:
    """A string field the event must carry."""
    value = event.get(key)
    if not isinstance(value, str):
        raise AsrProtocolError(f"{event.get('type')} without a string {key}: {str(event)[:80]}")
    return value


def field_seconds(event: dict[str, Any], key: str) -> float:
    """A time in seconds the event must carry (a non-negative number)."""
    value = event.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise AsrProtocolError(f"{event.get('type')} without {key} seconds: {str(event)[:80]}")
    return float(value)
