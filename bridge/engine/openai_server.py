"""Server side of the OpenAI transcription session, sans I/O: the embedded engine speaks the
second dialect too (docs/asr-dialects.md), so the bridge's OpenAI client is tested against a real
server that transcribes.

One :class:`OpenAiServerProtocol` per websocket opened with ``?intent=transcription``.  Text
frames go in through :meth:`~OpenAiServerProtocol.receive_text`; what to do comes out as events:
:class:`SendFrame` (answer the client) and :class:`TurnCommitted` (transcribe this audio and
answer with :meth:`~OpenAiServerProtocol.turn_text`).  Behaviour, as OpenAI's event reference
states it:

* ``session.created`` first; ``session.update`` with a *transcription* session is answered by
  ``session.updated`` with the effective configuration.  Input is ``audio/pcm`` at 24 kHz (the
  only PCM rate) or G.711 (``audio/pcmu``, ``audio/pcma``) at 8 kHz; the engine's recognizer
  takes 16 kHz, so each turn is decoded and resampled here.
  ``turn_detection`` must be off (``null``): the engine has no server VAD.
* ``input_audio_buffer.append`` adds audio; ``input_audio_buffer.commit`` turns the buffer into
  an item: ``input_audio_buffer.committed {item_id}``, then (from the shell) per word a delta
  and a ``...segment`` with its start/end seconds in the item (the recognizer's word times), and
  one ``...completed`` per item; ``input_audio_buffer.clear`` empties the buffer
  (``input_audio_buffer.cleared``).  A commit of less than 100 ms is refused
  (``input_audio_buffer_commit_empty``).
* Errors are ``{"type": "error", "event_id", "error": {"type", "code", "message"}}``; the socket
  stays open.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import soxr

from bridge.core import g711
from bridge.core.openai_wire import FORMATS, PCM, PCMA, PCMU, WIRE_RATE_HZ, audio_format
from bridge.engine.align import TimedWord
from bridge.engine.protocol import SAMPLE_RATE_HZ, SendFrame

__all__ = ["OpenAiServerProtocol", "SendFrame", "TurnCommitted", "error_frame"]

G711_RATE_HZ: Final = 8_000


@dataclass(frozen=True, slots=True)
class TurnCommitted:
    """Transcribe ``pcm16`` (16 kHz) and send its text as item ``item_id``."""

    item_id: str
    pcm16: bytes


Event = SendFrame | TurnCommitted


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _frame(kind: str, **fields: Any) -> SendFrame:
    return SendFrame(json.dumps({"type": kind, "event_id": _id("event"), **fields}))


def error_frame(code: str, message: str, kind: str = "invalid_request_error") -> SendFrame:
    """An ``error`` event as OpenAI's reference shapes it."""
    return _frame("error", error={"type": kind, "code": code, "message": message})


class OpenAiServerProtocol:
    """The transcription session of one websocket.

    Args:
        model_names: the models served (``audio.input.transcription.model`` must be one).
    """

    def __init__(self, model_names: list[str]) -> None:
        self.model_names = model_names
        self.session_id = _id("sess")
        self.model = model_names[0]
        self.language: str | None = None
        self.configured = False
        self.format = PCM  # the input format (session.update's audio.input.format)
        self._wire = bytearray()  # the open turn's audio, as appended
        self._previous_item: str | None = None

    def connection_made(self) -> SendFrame:
        return _frame("session.created", session=self._session())

    def receive_text(self, text: str) -> list[Event]:
        try:
            event = json.loads(text)
        except ValueError:
            return [error_frame("invalid_json", f"not JSON: {text[:60]!r}")]
        if not isinstance(event, dict):
            return [error_frame("invalid_event", "an event must be a JSON object")]
        kind = event.get("type")
        if kind == "session.update":
            return self._update(event.get("session"))
        if not self.configured:
            return [error_frame("session_not_configured", "send session.update first")]
        if kind == "input_audio_buffer.append":
            return self._append(event.get("audio"))
        if kind == "input_audio_buffer.commit":
            return self._commit()
        if kind == "input_audio_buffer.clear":
            self._wire.clear()
            return [_frame("input_audio_buffer.cleared")]
        return [error_frame("unknown_event", f"unknown or unsupported event type {kind!r}")]

    def turn_text(self, item_id: str, words: list[TimedWord]) -> list[SendFrame]:
        """The frames for a transcribed turn: per word a delta and a ``segment`` stating its
        span in the turn (the recognizer's word times, in seconds), then ``completed``."""
        kind = "conversation.item.input_audio_transcription"
        frames = []
        for word in words:
            frames.append(
                _frame(f"{kind}.delta", item_id=item_id, content_index=0, delta=word.text)
            )
            frames.append(
                _frame(
                    f"{kind}.segment",
                    item_id=item_id,
                    content_index=0,
                    id=_id("seg"),
                    text=word.text.strip(),
                    start=word.start_samples / SAMPLE_RATE_HZ,
                    end=word.end_samples / SAMPLE_RATE_HZ,
                    speaker="",
                )
            )
        transcript = "".join(w.text for w in words).strip()
        usage = {"type": "duration", "seconds": 0}
        frames.append(
            _frame(
                f"{kind}.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage=usage,
            )
        )
        return frames

    # -- internals -----------------------------------------------------------------------------

    def _session(self) -> dict[str, Any]:
        transcription: dict[str, Any] = {"model": self.model}
        if self.language:
            transcription["language"] = self.language
        return {
            "type": "transcription",
            "id": self.session_id,
            "audio": {
                "input": {
                    "format": audio_format(self.format),
                    "transcription": transcription,
                    "turn_detection": None,
                    "noise_reduction": None,
                }
            },
        }

    def _update(self, session: object) -> list[Event]:
        if not isinstance(session, dict) or session.get("type") != "transcription":
            return [
                error_frame("invalid_session", 'this server runs sessions of type "transcription"')
            ]
        audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
        given = audio.get("input") if isinstance(audio, dict) else None
        spec: dict[str, Any] = given if isinstance(given, dict) else {}
        fmt = spec.get("format")
        known = {f: audio_format(f) for f in FORMATS}
        if fmt is not None and fmt not in known.values():
            return [
                error_frame(
                    "unsupported_format",
                    f"input format {fmt!r}: audio/pcm at 24000, audio/pcmu or audio/pcma",
                )
            ]
        if spec.get("turn_detection") is not None:
            return [error_frame("unsupported_turn_detection", "turn_detection must be null here")]
        transcription = spec.get("transcription")
        if isinstance(transcription, dict):
            model = transcription.get("model", self.model)
            if model not in self.model_names:
                return [error_frame("model_not_found", f"model {model!r} is not served")]
            self.model = str(model)
            language = transcription.get("language")
            self.language = language if isinstance(language, str) else None
        if fmt is not None:
            self.format = next(f for f, shape in known.items() if shape == fmt)
        self.configured = True
        return [_frame("session.updated", session=self._session())]

    def _append(self, audio: object) -> list[Event]:
        if not isinstance(audio, str):
            return [error_frame("invalid_audio", "input_audio_buffer.append needs audio (base64)")]
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            return [error_frame("invalid_audio", "audio is not base64")]
        if len(pcm) % 2 and self.format == PCM:
            return [error_frame("invalid_audio", "PCM16 audio must have an even number of bytes")]
        self._wire += pcm
        return []

    def _commit(self) -> list[Event]:
        g711_in = self.format != PCM
        rate = G711_RATE_HZ if g711_in else WIRE_RATE_HZ
        samples = len(self._wire) if g711_in else len(self._wire) // 2
        if samples < rate // 10:
            return [
                error_frame(
                    "input_audio_buffer_commit_empty",
                    f"buffer too small: {samples * 1000 // rate} ms, need 100 ms",
                )
            ]
        if self.format == PCMU:
            wire = g711.decode_ulaw(self._wire)
        elif self.format == PCMA:
            wire = g711.decode_alaw(self._wire)
        else:
            wire = np.frombuffer(bytes(self._wire), dtype=np.int16)
        self._wire.clear()
        pcm16 = soxr.resample(wire, rate, SAMPLE_RATE_HZ).astype(np.int16).tobytes()
        item_id = _id("item")
        committed = _frame(
            "input_audio_buffer.committed", item_id=item_id, previous_item_id=self._previous_item
        )
        self._previous_item = item_id
        return [committed, TurnCommitted(item_id, pcm16)]
