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
* ``input_audio_buffer.clear`` empties the uncommitted buffer: a turn with no speech in it is
  dropped that way instead of committed (a recognizer given only silence invents text).
* "The maximum duration of a Realtime session is 60 minutes": a session older than
  ``max_session_samples`` of audio is renewed at the next turn boundary - new turns wait, the
  ones in flight complete, then the adapter replaces the socket (:attr:`wants_new_session`),
  as it does for vLLM's ``max_model_len``.

Rules (as :mod:`bridge.core.asr_protocol`): every transition is in ``_TRANSITIONS``; after every
input the caller sends ``data_to_send()`` and handles ``events_received()``; no clock, no I/O;
buffered audio is bounded (``max_buffer_samples``), the excess reported as ``AudioDropped``.
Audio is kept (16 kHz, the leg clock) from the first turn without a ``completed`` on: a new
session after a lost connection hears those turns again, each as the same turn (same number, so
its partial text is replaced, never doubled).
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from bridge.core.asr_events import (
    AudioDropped,
    Closed,
    OpenAiEvent,
    ServerError,
    SessionBuffer,
    SessionStarted,
    TurnCompleted,
    TurnDelta,
    TurnSegment,
)
from bridge.core.openai_wire import (
    APPEND_HEAD,
    CLEAR,
    COMMIT,
    MIN_TURN_SAMPLES,
    PCM,
    SESSION_RENEW_S,
    WIRE_RATE_HZ,
    WireAudio,
    field_seconds,
    field_text,
    session_update,
)
from bridge.core.state_table import transition
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import AsrProtocolError, AsrServerError

__all__ = [  # the events are defined with the vLLM dialect's, in asr_events
    "MIN_TURN_SAMPLES",
    "WIRE_RATE_HZ",
    "OpenAiEvent",
    "OpenAiState",
    "OpenAiTranscription",
    "TurnCompleted",
    "TurnDelta",
    "TurnSegment",
]


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
    COMMIT = "commit"  # end the open turn (a pause, or the leg's end), or drop it
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


@dataclass(slots=True)
class _Turn:
    number: int
    start: int  # the turn's audio on the leg clock
    end: int
    speech: tuple[int, int]  # where the speech in it is (the whole turn when not told)
    sent: bool = False  # appended and committed on the current session
    item_id: str | None = None


class OpenAiTranscription(SessionBuffer[OpenAiEvent]):
    """The OpenAI transcription session for one leg, across reconnects.

    Args:
        model: the transcription model (``audio.input.transcription.model``).
        language: ISO 639-1 hint; ``prompt``: context for the model.
        max_buffer_samples: bound on the 16 kHz audio kept for replay.
        max_session_samples: renew the session after this much audio (the 60-minute cap).
        pause_samples: quiet audio (``send_audio(speech=False)``) that ends a turn: committed
            when it held speech, cleared when it did not (0: the caller ends turns).
        max_turn_samples: a turn this long ends at once, pause or not (0: no bound).
        wire_format: ``audio/pcm`` (24 kHz), or ``audio/pcmu``/``audio/pcma`` for a leg whose
            source is 8 kHz G.711 (passed through: :class:`~bridge.core.openai_wire.WireAudio`).
    """

    def __init__(
        self,
        model: str,
        *,
        language: str | None = None,
        prompt: str | None = None,
        max_buffer_samples: int = 60 * ASR_SAMPLE_RATE_HZ,
        max_session_samples: int = SESSION_RENEW_S * ASR_SAMPLE_RATE_HZ,
        pause_samples: int = 0,
        max_turn_samples: int = 0,
        wire_format: str = PCM,
    ) -> None:
        self.model = model
        self.language = language
        self.prompt = prompt
        self.max_buffer_samples = max_buffer_samples
        self.max_session_samples = max_session_samples
        self.pause_samples = pause_samples
        self.max_turn_samples = max_turn_samples
        self.state = OpenAiState.DISCONNECTED
        self.session_id: str | None = None
        super().__init__()  # the audio kept: every turn without its completed, and the open one
        self._sent = 0  # leg-clock sample up to which this session was sent audio
        self._turn_start = 0  # the open turn's first sample
        self._speech: tuple[int, int] | None = None  # the open turn's speech, first to last
        self._quiet = 0  # quiet samples since the last speech
        self._turns: list[_Turn] = []  # committed, not completed, oldest first
        self._numbered = 0
        self._wire = WireAudio(wire_format)
        self._session_start = 0  # leg-clock sample the current session's audio starts at
        self._renew = False  # the session is past max_session_samples: replace it when idle
        self._ending = False

    # -- outputs -------------------------------------------------------------------------------

    @property
    def samples_unacknowledged(self) -> int:
        """Audio of committed turns the server owes a ``completed`` for (flow control; the open
        turn is not owed anything until it is committed)."""
        return sum(t.end - t.start for t in self._turns)

    @property
    def samples_in_flight(self) -> int:
        """Audio of turns sent and not completed (heard again if the session is lost)."""
        return sum(t.end - t.start for t in self._turns if t.sent)

    @property
    def generation_start(self) -> int:
        """Where the current session's audio starts on the leg clock."""
        return self._session_start

    @property
    def closed(self) -> bool:
        return self.state is OpenAiState.CLOSED

    @property
    def awaiting_reply(self) -> bool:
        """A committed turn has no ``completed`` yet: silence from the server means a stall.
        (The open turn is not awaited: the server says nothing about audio before a commit.)"""
        return any(t.sent for t in self._turns)

    @property
    def wants_new_session(self) -> bool:
        """The session is due for renewal and idle: the adapter should replace the socket."""
        idle = not any(t.sent for t in self._turns)
        return self._renew and idle and self.state is OpenAiState.STREAMING

    # -- inputs from the adapter ---------------------------------------------------------------

    def receive_connected(self, *, model: str | None = None) -> None:
        """The socket is open (to a server that serves ``model``, when it is another name)."""
        self._advance(Input.CONNECTED)
        self.model = model or self.model

    def receive_connection_lost(self) -> None:
        """The session and its turns in flight are gone; the next one hears them again."""
        self._advance(Input.CONNECTION_LOST)
        self._out.clear()
        for turn in self._turns:
            turn.sent, turn.item_id = False, None
        self._sent = self._buf_start
        self._wire.reset()
        self._renew = False

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
            self._out.append(
                session_update(self.model, self.language, self.prompt, self._wire.wire)
            )
        elif kind == "session.updated":
            was = self.state
            self._advance(Input.SESSION_UPDATED)
            if was is OpenAiState.CONFIGURING:
                self._session_start = self._buf_start
                self._events.append(SessionStarted(self.session_id or ""))
                self._send_audio()
                self._maybe_close()
        elif kind == "input_audio_buffer.committed":
            self._advance(Input.TURN_EVENT)
            waiting = next((t for t in self._turns if t.sent and t.item_id is None), None)
            if waiting is None:
                raise AsrProtocolError("input_audio_buffer.committed for no commit of ours")
            waiting.item_id = field_text(event, "item_id")
        elif kind.startswith("conversation.item.input_audio_transcription."):
            self._advance(Input.TURN_EVENT)
            self._receive_turn_event(kind.rsplit(".", 1)[1], event)
        # Others (speech_started without server VAD, conversation.item.added, rate limits, a
        # newer server's events) carry nothing for a transcript.

    # -- inputs from the application -----------------------------------------------------------

    def send_audio(self, pcm16: bytes, *, speech: bool = True) -> None:
        """16 kHz PCM16 on the leg clock (normally one 80 ms chunk); ``speech``: the leg's
        energy detector heard speech in it (turns end at pauses, word times avoid silence)."""
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if not pcm16:
            return
        self._advance(Input.AUDIO)
        start = self.samples_received
        self._buf += pcm16
        end = self.samples_received
        if speech:
            self._speech = (self._speech[0] if self._speech else start, end)
            self._quiet = 0
        else:
            self._quiet += end - start
        self._bound_buffer()
        if self._live:
            self._send_audio()
        self._end_turn_by_rule()

    def _end_turn_by_rule(self) -> None:
        """A pause after speech commits the turn; a pause-long turn of silence is cleared; a
        turn of ``max_turn_samples`` is committed (or cleared) whatever it holds."""
        length = self.samples_received - self._turn_start
        paused = self.pause_samples and self._quiet >= self.pause_samples
        if (paused and self._speech) or (self.max_turn_samples and length >= self.max_turn_samples):
            if self._speech and length >= MIN_TURN_SAMPLES:
                self.end_turn()
            else:
                self.drop_turn()
        elif paused and length >= self.pause_samples:
            self.drop_turn()

    def end_turn(self) -> bool:
        """Commit the open turn (a pause); returns whether there was one to commit."""
        self._advance(Input.COMMIT)
        if self.samples_received - self._turn_start < MIN_TURN_SAMPLES:
            return False
        self._commit(self.samples_received)
        return True

    def drop_turn(self) -> None:
        """The open turn holds no speech: clear it from the server's buffer, do not commit it
        (the leg clock goes on; the audio is simply never transcribed)."""
        self._advance(Input.COMMIT)
        if self._live:
            if self._sent > self._turn_start:
                self._out.append(CLEAR)
                self._wire.reset()
            self._sent = self.samples_received
        self._turn_start = self.samples_received
        self._speech = None
        self._trim_completed()
        self._check_age()

    def recycle(self) -> bool:
        """Nothing to do: turns end by the pause rule, sessions renew by age (vLLM's recycle
        ends a generation that grows costly; a turn never grows past ``max_turn_samples``)."""
        return False

    def end_stream(self) -> None:
        """No more audio: commit the last turn, close once every turn has completed."""
        if self.state is OpenAiState.CLOSED:
            return
        self._ending = True
        self._advance(Input.COMMIT)
        tail = self.samples_received - self._turn_start
        if tail and self._speech is not None:  # a tail of silence is not worth a turn
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

    @property
    def _live(self) -> bool:
        """Audio and commits go out now (else they wait for the next session)."""
        return self.state is OpenAiState.STREAMING and not self._renew

    def _send_audio(self) -> None:
        """Append what this session has not had, committing the turns that ended meanwhile."""
        for turn in self._turns:
            if not turn.sent:
                self._sent = max(self._sent, turn.start)  # skip audio of dropped turns
                self._append_upto(turn.end, last=True)
                self._out.append(COMMIT)
                turn.sent = True
        self._sent = max(self._sent, self._turn_start)
        if self.samples_received > self._sent:
            self._append_upto(self.samples_received, last=False)

    def _append_upto(self, end: int, *, last: bool) -> None:
        begin = (self._sent - self._buf_start) * 2
        pcm = np.frombuffer(bytes(self._buf[begin : (end - self._buf_start) * 2]), dtype=np.int16)
        wire = self._wire.encode(pcm, self._sent, last=last)
        self._sent = end
        if wire:
            audio = base64.b64encode(wire).decode("ascii")
            self._out.append(APPEND_HEAD + audio + '"}')

    def _commit(self, end: int) -> None:
        self._numbered += 1
        turn = _Turn(self._numbered, self._turn_start, end, self._speech or (self._turn_start, end))
        self._turns.append(turn)
        self._turn_start = end
        self._speech = None
        if self._live:
            self._append_upto(end, last=True)
            self._out.append(COMMIT)
            turn.sent = True
        self._check_age()

    def _check_age(self) -> None:
        """At a turn boundary: renew a session that has had ``max_session_samples``."""
        if self._turn_start - self._session_start >= self.max_session_samples:
            self._renew = self.state is OpenAiState.STREAMING

    def _turn(self, event: dict[str, Any]) -> _Turn:
        item = field_text(event, "item_id")
        turn = next((t for t in self._turns if t.item_id == item), None)
        if turn is None:
            raise AsrProtocolError(f"transcription event for item {item!r} of no turn of ours")
        return turn

    def _receive_turn_event(self, what: str, event: dict[str, Any]) -> None:
        turn = self._turn(event)
        if what == "delta":
            delta = event.get("delta") or ""
            self._events.append(TurnDelta(turn.number, str(delta), *turn.speech))
        elif what == "segment":
            start, end = field_seconds(event, "start"), field_seconds(event, "end")
            self._events.append(
                TurnSegment(
                    turn.number,
                    field_text(event, "text"),
                    min(turn.start + int(start * ASR_SAMPLE_RATE_HZ), turn.end),
                    min(turn.start + int(end * ASR_SAMPLE_RATE_HZ), turn.end),
                    event.get("speaker") if isinstance(event.get("speaker"), str) else None,
                )
            )
        elif what in ("completed", "failed"):
            self._turns.remove(turn)
            if what == "completed":
                self._events.append(
                    TurnCompleted(turn.number, field_text(event, "transcript"), *turn.speech)
                )
            else:
                error = event.get("error")
                message = error.get("message") if isinstance(error, dict) else None
                reason = f"transcription failed: {message or 'no reason given'}"
                self._events.append(AudioDropped(turn.start, turn.end - turn.start, reason))
            self._trim_completed()
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

    def _trim_completed(self) -> None:
        """Keep audio only from the oldest turn without ``completed`` (or the open turn) on."""
        self._trim(min([t.start for t in self._turns] + [self._turn_start]))

    def _bound_buffer(self) -> None:
        excess = len(self._buf) // 2 - self.max_buffer_samples
        if excess > 0:
            start = self._buf_start
            self._trim(start + excess)
            # A turn whose audio is all gone is not committed (it would be empty).
            self._turns = [t for t in self._turns if t.sent or t.end > self._buf_start]
            self._sent = max(self._sent, self._buf_start)
            self._turn_start = max(self._turn_start, self._buf_start)
            self._events.append(AudioDropped(start, excess, "ASR backlog over the buffer bound"))
