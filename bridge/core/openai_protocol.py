"""Sans-I/O client for the OpenAI transcription session, one instance per call leg (the second
ASR dialect of issue 16; NVIDIA Dynamo, vLLM-Omni, Riva NIM and Speaches speak it).

Theory of operation (OpenAI's realtime-transcription guide and client/server event reference, as
the ``openai`` package's typed models state them; docs/asr-dialects.md):

* Connect to ``/v1/realtime?intent=transcription``; the server's first event is
  ``session.created``.  We answer ``session.update`` with a *transcription* session: input
  ``audio/pcm`` at 24 kHz ("Only a 24kHz sample rate is supported"), the transcription model,
  language and prompt, turn detection off (``null``: "the client must manually trigger"), noise
  reduction off (phone audio is already filtered).  The server confirms with
  ``session.updated``; audio waits for it.
* ``input_audio_buffer.append`` adds audio to the buffer; ``input_audio_buffer.commit`` ends a
  *turn*: the server answers ``input_audio_buffer.committed`` with the ``item_id`` the turn's
  text will carry, then ``conversation.item.input_audio_transcription.delta`` events and one
  ``...completed`` (or ``...failed``) for it - asynchronously, while the next turn streams.
  Unlike vLLM's step clock nothing here says which audio a delta belongs to: a turn's span on
  the leg clock is ours (where we committed), a word's time inside it is the server's only where
  it sends segments (``...segment``: start/end seconds in the turn), else estimated.
* A commit needs at least 100 ms of audio; shorter turns are carried into the next one.

Rules (as :mod:`bridge.core.asr_protocol`): every transition is in ``_TRANSITIONS``; after every
input the caller sends ``data_to_send()`` and handles ``events_received()``; no clock, no I/O;
buffered audio is bounded (``max_buffer_samples``), the excess reported as ``AudioDropped``.
Audio is kept (16 kHz, the leg clock) from the first turn without a ``completed`` on: a new
session after a lost connection hears it again, as one turn.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import soxr

from bridge.core.asr_protocol import AudioDropped, Closed, ServerError, SessionStarted
from bridge.core.state_table import transition
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import AsrProtocolError, AsrServerError

#: "Only a 24kHz sample rate is supported" for ``audio/pcm`` (RealtimeAudioFormats).
WIRE_RATE_HZ: Final = 24_000
#: A commit of less audio is refused (input_audio_buffer_commit_empty): carried to the next.
MIN_TURN_SAMPLES: Final = ASR_SAMPLE_RATE_HZ // 10
_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
_COMMIT: Final = '{"type":"input_audio_buffer.commit"}'


class OpenAiState(enum.Enum):
    DISCONNECTED = "disconnected"  # no socket; audio is buffered
    AWAITING_SESSION = "awaiting_session"  # socket open, waiting for session.created
    CONFIGURING = "configuring"  # session.update sent, waiting for session.updated
    STREAMING = "streaming"  # appends flow; commits end turns
    CLOSED = "closed"  # every turn completed after the end, or failed for good


class Input(enum.Enum):
    CONNECTED = "connected"
    CONNECTION_LOST = "connection_lost"
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    TURN_EVENT = "turn event"  # committed, delta, completed, failed, segment
    AUDIO = "audio"
    COMMIT = "commit"  # end the open turn (a pause, or the leg's end)
    FATAL = "fatal"


S, In = OpenAiState, Input
_TRANSITIONS: Final[dict[tuple[OpenAiState, Input], OpenAiState]] = {
    (S.DISCONNECTED, In.CONNECTED): S.AWAITING_SESSION,
    (S.DISCONNECTED, In.AUDIO): S.DISCONNECTED,  # buffer
    (S.DISCONNECTED, In.COMMIT): S.DISCONNECTED,  # a turn boundary, sent after reconnecting
    (S.AWAITING_SESSION, In.SESSION_CREATED): S.CONFIGURING,  # -> session.update
    (S.AWAITING_SESSION, In.AUDIO): S.AWAITING_SESSION,
    (S.AWAITING_SESSION, In.COMMIT): S.AWAITING_SESSION,
    (S.CONFIGURING, In.SESSION_UPDATED): S.STREAMING,  # -> replay the buffer, commit its turns
    (S.CONFIGURING, In.AUDIO): S.CONFIGURING,
    (S.CONFIGURING, In.COMMIT): S.CONFIGURING,
    (S.STREAMING, In.SESSION_UPDATED): S.STREAMING,  # an echo of a later update
    (S.STREAMING, In.AUDIO): S.STREAMING,  # append
    (S.STREAMING, In.COMMIT): S.STREAMING,  # commit
    (S.STREAMING, In.TURN_EVENT): S.STREAMING,  # -> CLOSED once ended and all completed
}
for _state in (S.AWAITING_SESSION, S.CONFIGURING, S.STREAMING):
    _TRANSITIONS[(_state, In.CONNECTION_LOST)] = S.DISCONNECTED
for _state in (S.DISCONNECTED, S.AWAITING_SESSION, S.CONFIGURING, S.STREAMING):
    _TRANSITIONS[(_state, In.FATAL)] = S.CLOSED


@dataclass(frozen=True, slots=True)
class TurnDelta:
    """More text of turn ``turn`` (leg-clock samples ``start`` to ``end``), as it comes."""

    turn: int
    delta: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TurnSegment:
    """A span of a turn the server timed itself (``...segment``), on the leg clock."""

    turn: int
    text: str
    start: int
    end: int
    speaker: str | None


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """The final text of turn ``turn``: the audio from ``start`` to ``end`` (leg clock)."""

    turn: int
    text: str
    start: int
    end: int


OpenAiEvent = (
    SessionStarted | TurnDelta | TurnSegment | TurnCompleted | AudioDropped | ServerError | Closed
)


@dataclass(slots=True)
class _Turn:
    number: int
    start: int
    end: int
    item_id: str | None = None


class OpenAiTranscription:
    """The OpenAI transcription session for one leg, across reconnects.

    Args:
        model: the transcription model (``audio.input.transcription.model``).
        language: ISO 639-1 hint; ``prompt``: context for the model.
        max_buffer_samples: bound on the 16 kHz audio kept for replay.
    """

    def __init__(
        self,
        model: str,
        *,
        language: str | None = None,
        prompt: str | None = None,
        max_buffer_samples: int = 60 * ASR_SAMPLE_RATE_HZ,
    ) -> None:
        self.model = model
        self.language = language
        self.prompt = prompt
        self.max_buffer_samples = max_buffer_samples
        self.state = OpenAiState.DISCONNECTED
        self.session_id: str | None = None
        self._out: list[str] = []
        self._events: list[OpenAiEvent] = []
        self._buf = bytearray()  # 16 kHz PCM16 from _buf_start: every turn not completed
        self._buf_start = 0
        self._sent = 0  # leg-clock sample up to which this session was sent audio
        self._turn_start = 0  # the open turn's first sample
        self._turns: list[_Turn] = []  # committed, not completed, oldest first
        self._unsent_commits: list[int] = []  # turn ends this session has not been sent yet
        self._numbered = 0
        self._resampler: soxr.ResampleStream | None = None
        self._ending = False

    # -- outputs -------------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[OpenAiEvent]:
        events, self._events = self._events, []
        return events

    @property
    def samples_received(self) -> int:
        return self._buf_start + len(self._buf) // 2

    @property
    def samples_unacknowledged(self) -> int:
        """Audio no ``completed`` has accounted for yet (flow control)."""
        return len(self._buf) // 2

    # -- inputs from the adapter ---------------------------------------------------------------

    def receive_connected(self) -> None:
        self._advance(Input.CONNECTED)

    def receive_connection_lost(self) -> None:
        """The session and its turns in flight are gone; they are heard again, as one turn."""
        self._advance(Input.CONNECTION_LOST)
        self._out.clear()
        self._turns.clear()
        self._unsent_commits.clear()
        self._turn_start = self._buf_start
        self._sent = self._buf_start
        self._resampler = None

    def receive_message(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError as exc:
            raise AsrProtocolError(f"server sent invalid JSON: {text[:80]!r}") from exc
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise AsrProtocolError(f"server sent an event without a type: {text[:80]!r}")
        kind: str = event["type"]
        if kind == "error":
            self._receive_error(event.get("error"))
        elif kind == "session.created":
            self._advance(Input.SESSION_CREATED)
            session = event.get("session")
            self.session_id = str(session.get("id", "")) if isinstance(session, dict) else ""
            self._out.append(json.dumps(self._session_update()))
        elif kind == "session.updated":
            was = self.state
            self._advance(Input.SESSION_UPDATED)
            if was is OpenAiState.CONFIGURING:
                self._events.append(SessionStarted(self.session_id or ""))
                self._send_audio()
                self._maybe_close()
        elif kind == "input_audio_buffer.committed":
            self._advance(Input.TURN_EVENT)
            waiting = next((t for t in self._turns if t.item_id is None), None)
            if waiting is None:
                raise AsrProtocolError("input_audio_buffer.committed for no commit of ours")
            waiting.item_id = _text(event, "item_id")
        elif kind.startswith("conversation.item.input_audio_transcription."):
            self._advance(Input.TURN_EVENT)
            self._receive_turn_event(kind.rsplit(".", 1)[1], event)
        # Others (speech_started without server VAD, conversation.item.added, rate limits, a
        # newer server's events) carry nothing for a transcript.

    # -- inputs from the application -----------------------------------------------------------

    def send_audio(self, pcm16: bytes) -> None:
        """16 kHz PCM16 on the leg clock (normally one 80 ms chunk)."""
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if not pcm16:
            return
        self._advance(Input.AUDIO)
        self._buf += pcm16
        self._bound_buffer()
        if self.state is OpenAiState.STREAMING:
            self._send_audio()

    def end_turn(self) -> bool:
        """Commit the open turn (a pause); returns whether there was one to commit."""
        self._advance(Input.COMMIT)
        if self.samples_received - self._turn_start < MIN_TURN_SAMPLES:
            return False
        self._commit(self.samples_received)
        return True

    def end_stream(self) -> None:
        """No more audio: commit the last turn, close once every turn has completed."""
        if self.state is OpenAiState.CLOSED:
            return
        self._ending = True
        self._advance(Input.COMMIT)
        tail = self.samples_received - self._turn_start
        if tail:
            if tail < MIN_TURN_SAMPLES:  # silence after the end makes it a turn the server takes
                self._buf += bytes(2 * (MIN_TURN_SAMPLES - tail))
            self._commit(self.samples_received)
        self._maybe_close()

    def fail(self, reason: str) -> None:
        if self.state is OpenAiState.CLOSED:
            return
        self._advance(Input.FATAL)
        if self._buf:
            self._events.append(AudioDropped(self._buf_start, len(self._buf) // 2, reason))
        self._buf.clear()
        self._events.append(Closed(reason))

    # -- internals -----------------------------------------------------------------------------

    def _advance(self, what: Input) -> None:
        by_server = what in (Input.SESSION_CREATED, Input.SESSION_UPDATED, Input.TURN_EVENT)
        self.state = transition(_TRANSITIONS, self.state, what, by_server=by_server)

    def _session_update(self) -> dict[str, Any]:
        transcription: dict[str, Any] = {"model": self.model}
        if self.language:
            transcription["language"] = self.language
        if self.prompt:
            transcription["prompt"] = self.prompt
        return {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": WIRE_RATE_HZ},
                        "transcription": transcription,
                        "turn_detection": None,
                        "noise_reduction": None,
                    }
                },
            },
        }

    def _send_audio(self) -> None:
        """Append what this session has not had, committing the turns that ended meanwhile."""
        for end in self._unsent_commits:
            self._append_upto(end, last=True)
            self._out.append(_COMMIT)
        self._unsent_commits.clear()
        if self.samples_received > self._sent:
            self._append_upto(self.samples_received, last=False)

    def _append_upto(self, end: int, *, last: bool) -> None:
        begin = (self._sent - self._buf_start) * 2
        pcm = np.frombuffer(bytes(self._buf[begin : (end - self._buf_start) * 2]), dtype=np.int16)
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(
                ASR_SAMPLE_RATE_HZ, WIRE_RATE_HZ, 1, dtype="int16"
            )
        wire = self._resampler.resample_chunk(pcm, last=last)
        if last:
            self._resampler = None  # a turn's audio is complete: the next starts clean
        self._sent = end
        if len(wire):
            audio = base64.b64encode(wire.tobytes()).decode("ascii")
            self._out.append(_APPEND_HEAD + audio + '"}')

    def _commit(self, end: int) -> None:
        self._numbered += 1
        self._turns.append(_Turn(self._numbered, self._turn_start, end))
        self._turn_start = end
        if self.state is OpenAiState.STREAMING:
            self._append_upto(end, last=True)
            self._out.append(_COMMIT)
        else:
            self._unsent_commits.append(end)

    def _turn(self, event: dict[str, Any]) -> _Turn:
        item = _text(event, "item_id")
        turn = next((t for t in self._turns if t.item_id == item), None)
        if turn is None:
            raise AsrProtocolError(f"transcription event for item {item!r} of no turn of ours")
        return turn

    def _receive_turn_event(self, what: str, event: dict[str, Any]) -> None:
        turn = self._turn(event)
        if what == "delta":
            delta = event.get("delta") or ""
            self._events.append(TurnDelta(turn.number, str(delta), turn.start, turn.end))
        elif what == "segment":
            start, end = _seconds(event, "start"), _seconds(event, "end")
            self._events.append(
                TurnSegment(
                    turn.number,
                    _text(event, "text"),
                    min(turn.start + int(start * ASR_SAMPLE_RATE_HZ), turn.end),
                    min(turn.start + int(end * ASR_SAMPLE_RATE_HZ), turn.end),
                    event.get("speaker") if isinstance(event.get("speaker"), str) else None,
                )
            )
        elif what in ("completed", "failed"):
            self._turns.remove(turn)
            if what == "completed":
                self._events.append(
                    TurnCompleted(turn.number, _text(event, "transcript"), turn.start, turn.end)
                )
            else:
                error = event.get("error")
                message = error.get("message") if isinstance(error, dict) else None
                reason = f"transcription failed: {message or 'no reason given'}"
                self._events.append(AudioDropped(turn.start, turn.end - turn.start, reason))
            oldest = min((t.start for t in self._turns), default=turn.end)
            self._trim(min(oldest, self._turn_start))
            self._maybe_close()

    def _receive_error(self, error: object) -> None:
        body = error if isinstance(error, dict) else {}
        code = body.get("code") if isinstance(body.get("code"), str) else body.get("type")
        failure = AsrServerError(
            str(body.get("message", "")), code if isinstance(code, str) else None
        )
        self._events.append(ServerError(failure))
        if not failure.retryable:
            self.fail(f"ASR server error {failure.code}: {failure.action}")

    def _maybe_close(self) -> None:
        if self._ending and not self._turns and self.state is OpenAiState.STREAMING:
            self.state = OpenAiState.CLOSED
            self._events.append(Closed("leg ended"))

    def _trim(self, upto: int) -> None:
        drop = min(upto - self._buf_start, len(self._buf) // 2)
        if drop > 0:
            del self._buf[: drop * 2]
            self._buf_start += drop

    def _bound_buffer(self) -> None:
        excess = len(self._buf) // 2 - self.max_buffer_samples
        if excess > 0:
            start = self._buf_start
            self._trim(start + excess)
            self._sent = max(self._sent, self._buf_start)
            self._turn_start = max(self._turn_start, self._buf_start)
            self._events.append(AudioDropped(start, excess, "ASR backlog over the buffer bound"))


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise AsrProtocolError(f"{event.get('type')} without a string {key}: {str(event)[:80]}")
    return value


def _seconds(event: dict[str, Any], key: str) -> float:
    value = event.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise AsrProtocolError(f"{event.get('type')} without {key} seconds: {str(event)[:80]}")
    return float(value)
