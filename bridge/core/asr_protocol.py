"""Sans-I/O client for vLLM's ``/v1/realtime`` WebSocket API, one instance per call leg.

Theory of operation (vllm-realtime.md §1, verified against the real server in vllm-cpu.md §4):

* On connect the server sends ``session.created``.  We answer ``session.update`` with the model;
  there is no acknowledgement.  "session.update must succeed before any commit" (§1.5 item 2).
* A non-final ``input_audio_buffer.commit`` starts a *generation* (one engine request); appends
  feed it; ``commit`` with ``final: true`` ends its audio, the server pads, emits the remaining
  deltas and ``transcription.done``.  The socket is then reused for the next generation.
* The server emits exactly one ``transcription.delta`` per 80 ms step: the first once the
  generation holds ``1320 + delay`` samples (9000 = 562.5 ms at the default 480 ms delay), then one
  per further 1280 samples (§2.4).  Step ``k`` carries the text of audio frame ``k``:
  ``[k * 1280, (k + 1) * 1280)`` samples after the generation's first sample.  Counting deltas
  is therefore the timestamp clock; nothing else is needed from the server.
* "audio appended *after* the final commit but *before* transcription.done is **discarded**"
  (§1.5 item 5): audio that arrives while we finalize is *held* and sent after ``done``.
* "Spontaneous transcription.done at max length" (§1.5 item 7).  Re-committing on the same socket
  is not exact: vLLM 0.32 moves queued audio into the dead generation's buffer, clears the queue
  right after ``done``, and keeps appends that were still in flight for the next generation
  (measured: 3.6 s heard twice).  So an unsolicited ``done`` puts the stream in RESETTING: the
  adapter replaces the socket (the server discards everything on disconnect) and the next
  generation replays from the first frame that got no step.  A dropped connection is replayed
  the same way: nothing is lost, a few frames of context may be heard twice.

Rules:

1. Every transition is in ``_TRANSITIONS``; an input that is not there for the current state
   raises (``InvalidState`` for our own calls, ``AsrProtocolError`` for server events) and changes
   nothing.
2. After every ``receive_*`` / ``send_*`` / ``end_*`` call the caller must send
   ``data_to_send()`` on the socket and handle ``events_received()``.
3. The object never reads a clock, sleeps or does I/O.  Deadlines (no ``done`` after a final)
   are the adapter's job.
4. Buffered audio (held + replayable) is bounded by ``max_buffer_samples``; beyond it the oldest
   audio is dropped and reported as a ``Gap``, never grown without limit.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Final

from bridge.core.asr_events import (
    AsrEvent,
    AudioDropped,
    Closed,
    GenerationEnded,
    ServerError,
    SessionBuffer,
    SessionStarted,
    StepText,
)
from bridge.core.state_table import transition
from bridge.core.step_clock import StepClock
from bridge.core.types import ASR_SAMPLE_RATE_HZ, CHUNK_SAMPLES
from bridge.errors import AsrProtocolError, AsrServerError, InvalidState

__all__ = [  # the events are defined with the OpenAI dialect's, in asr_events
    "AsrEvent",
    "AsrState",
    "AsrStream",
    "AudioDropped",
    "Closed",
    "GenerationEnded",
    "ServerError",
    "SessionStarted",
    "StepText",
    "expected_steps",
]


class AsrState(enum.Enum):
    DISCONNECTED = "disconnected"  # no socket; audio is buffered
    AWAITING_SESSION = "awaiting_session"  # socket open, waiting for session.created
    READY = "ready"  # session.update sent, no generation running
    STREAMING = "streaming"  # a generation runs, appends flow
    FINALIZING = "finalizing"  # final commit sent, waiting for transcription.done
    RESETTING = "resetting"  # the server ended a generation by itself: replace the socket
    CLOSED = "closed"  # leg done (or failed for good)


class Input(enum.Enum):
    CONNECTED = "connected"
    CONNECTION_LOST = "connection_lost"
    SESSION_CREATED = "session.created"
    DELTA = "transcription.delta"
    DONE = "transcription.done"
    AUDIO = "audio"  # audio arrives and can be sent now
    END = "end"  # final commit: end of leg or recycle
    FATAL = "fatal"  # non-retryable server error, or the adapter gives up


S, In = AsrState, Input
# (state, input) -> next state.  Where the next state depends on buffered audio the table gives
# the state before that check; the handler named in the comment decides.
_TRANSITIONS: Final[dict[tuple[AsrState, Input], AsrState]] = {
    (S.DISCONNECTED, In.CONNECTED): S.AWAITING_SESSION,
    (S.DISCONNECTED, In.AUDIO): S.DISCONNECTED,  # buffer
    (S.DISCONNECTED, In.END): S.DISCONNECTED,  # remember, finish after reconnect
    (S.AWAITING_SESSION, In.SESSION_CREATED): S.READY,  # -> session.update, flush buffer
    (S.AWAITING_SESSION, In.AUDIO): S.AWAITING_SESSION,  # buffer
    (S.AWAITING_SESSION, In.END): S.AWAITING_SESSION,  # remember
    (S.READY, In.AUDIO): S.STREAMING,  # commit + append
    (S.READY, In.END): S.READY,  # nothing running; closes if the leg ends
    (S.STREAMING, In.AUDIO): S.STREAMING,  # append
    (S.STREAMING, In.DELTA): S.STREAMING,
    (S.STREAMING, In.DONE): S.RESETTING,  # unsolicited (max_model_len): new socket, replay
    (S.RESETTING, In.AUDIO): S.RESETTING,  # buffer until the new session
    (S.RESETTING, In.END): S.RESETTING,  # remember
    (S.STREAMING, In.END): S.FINALIZING,  # commit final
    (S.FINALIZING, In.AUDIO): S.FINALIZING,  # hold: the server would discard it
    (S.FINALIZING, In.DELTA): S.FINALIZING,
    (S.FINALIZING, In.DONE): S.READY,  # -> send held audio, or close
    (S.FINALIZING, In.END): S.FINALIZING,  # leg ends during a recycle: finish after done
}
# Losing the socket or a fatal error is allowed in every state but CLOSED.
for _state in (S.AWAITING_SESSION, S.READY, S.STREAMING, S.FINALIZING, S.RESETTING):
    _TRANSITIONS[(_state, In.CONNECTION_LOST)] = S.DISCONNECTED
for _state in (
    S.DISCONNECTED,
    S.AWAITING_SESSION,
    S.READY,
    S.STREAMING,
    S.FINALIZING,
    S.RESETTING,
):
    _TRANSITIONS[(_state, In.FATAL)] = S.CLOSED


# The client ---------------------------------------------------------------------------------


def expected_steps(samples: int, *, delay_ms: int = 480) -> int:
    """Deltas a generation of ``samples`` yields: floor((12760 + N) / 1280) + 1 at any delay.

    The server pads the end with ``(delay + 1) + 10`` frames (vllm-realtime.md §2.2); with no
    audio at all no step runs.
    """
    return StepClock(delay_ms).steps_available(samples, ended=True)


_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
_COMMIT: Final = '{"type":"input_audio_buffer.commit"}'
_COMMIT_FINAL: Final = '{"type":"input_audio_buffer.commit","final":true}'


class AsrStream(SessionBuffer[AsrEvent]):
    """The realtime protocol for one leg, across reconnects and recycled generations.

    Args:
        model: served model name sent in ``session.update``.
        delay_ms: the server's transcription delay (a tekken.json setting); used only to know
            how much audio a step accounts for.
        max_buffer_samples: bound on audio kept for holding and replay (16 kHz samples).
        language: ISO 639-1 hint sent in ``session.update``; vLLM 0.33 accepts and ignores
            extra fields ("extra='allow'", vllm-realtime.md §1.2), engines that read it use it.
    """

    def __init__(
        self,
        model: str,
        *,
        delay_ms: int = 480,
        max_buffer_samples: int = 60 * ASR_SAMPLE_RATE_HZ,
        language: str | None = None,
    ) -> None:
        if delay_ms % 80 or not 80 <= delay_ms <= 2400:
            raise ValueError(f"delay_ms must be a multiple of 80 in 80..2400, got {delay_ms}")
        self.model = model
        self.language = language
        self.delay_ms = delay_ms
        self.max_buffer_samples = max_buffer_samples
        self.state = AsrState.DISCONNECTED
        self.session_id: str | None = None
        self.generation = 0  # number of generations started so far
        # The audio kept (``_buf``, from ``_buf_start`` on): its first
        # ``_gen_sent - (_buf_start - _gen_start)`` samples were sent to the running generation,
        # the rest is held.
        super().__init__()
        # Leg-clock bookkeeping, all in 16 kHz samples.
        self._gen_start = 0  # first sample of the running generation
        self._gen_sent = 0  # samples appended to the running generation
        self._gen_steps = 0  # deltas received in the running generation
        self._gen_text: list[str] = []
        self._gen_final_sent = False
        self._ending = False  # the leg has ended: finish and close

    # -- outputs -------------------------------------------------------------------------------

    @property
    def samples_unacknowledged(self) -> int:
        """Audio sent or held that no step has accounted for yet (flow control)."""
        return len(self._buf) // 2

    @property
    def samples_in_flight(self) -> int:
        """Audio sent to the running generation with no step yet (sent again if it is lost)."""
        return max(0, self._gen_start + self._gen_sent - self._buf_start)

    @property
    def closed(self) -> bool:
        return self.state is AsrState.CLOSED

    @property
    def awaiting_reply(self) -> bool:
        """Audio the server owes a step for, or the ``done`` of a final: silence is a stall."""
        return self.samples_unacknowledged > 0 or self.state is AsrState.FINALIZING

    @property
    def wants_new_session(self) -> bool:
        """The server ended a generation by itself: the adapter should replace the socket."""
        return self.state is AsrState.RESETTING

    @property
    def generation_start(self) -> int:
        """Leg-clock sample where the running (or next) generation starts."""
        return self._gen_start

    # -- inputs from the adapter ---------------------------------------------------------------

    def receive_connected(self, *, model: str | None = None) -> None:
        """The socket is open (to a server that serves ``model``, when it is another name)."""
        self._advance(Input.CONNECTED)
        self.model = model or self.model

    def receive_connection_lost(self) -> None:
        """The socket closed or failed.  The running generation is lost; its audio is replayed."""
        was = self.state
        self._advance(Input.CONNECTION_LOST)
        self._out.clear()  # unsent frames were the lost session's; the next one replays audio
        if was in (AsrState.STREAMING, AsrState.FINALIZING):
            self._end_generation(text="", completion_tokens=None, solicited=False)

    def receive_message(self, text: str) -> None:
        """Handle one text frame from the server."""
        try:
            event = json.loads(text)
        except ValueError as exc:
            raise AsrProtocolError(f"server sent invalid JSON: {text[:80]!r}") from exc
        if not isinstance(event, dict):
            raise AsrProtocolError(f"server sent JSON that is not an object: {text[:80]!r}")
        kind = event.get("type")
        if kind == "error":
            self._receive_error(event)
        elif kind == "session.created":
            self._advance(Input.SESSION_CREATED)
            self.session_id = str(event.get("id", ""))
            # "Client sends session.update with model" - mandatory before any commit (§1.5).
            update = {"type": "session.update", "model": self.model}
            if self.language:
                update["language"] = self.language
            self._out.append(json.dumps(update))
            self._events.append(SessionStarted(self.session_id))
            self._flush()
        elif kind == "transcription.delta":
            delta = event.get("delta")
            if not isinstance(delta, str):
                raise AsrProtocolError(f"transcription.delta without a text delta: {text[:80]!r}")
            self._advance(Input.DELTA)
            self._receive_delta(delta)
        elif kind == "transcription.done":
            self._advance(Input.DONE)  # FINALIZING -> READY, or STREAMING -> RESETTING
            usage = event.get("usage")
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            solicited = self._gen_final_sent
            self._end_generation(
                text=str(event.get("text", "")),
                completion_tokens=tokens if isinstance(tokens, int) else None,
                solicited=solicited,
            )
            self._flush()
        # Other types (a future session.updated, ...) are ignored, as the upstream test does.

    # -- inputs from the application -----------------------------------------------------------

    def send_audio(self, pcm16: bytes, *, speech: bool = True) -> None:
        """Queue 16 kHz PCM16 audio (normally one 80 ms chunk) for the leg.  (``speech`` is for
        the OpenAI dialect's turns; the step clock needs no help.)"""
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if not pcm16:
            return
        was = self.state
        self._advance(Input.AUDIO)
        self._buf += pcm16
        self._bound_buffer()
        if was is AsrState.READY:
            self._start_generation()
        elif self.state is AsrState.STREAMING:
            self._send_appends()

    def recycle(self) -> bool:
        """Recycle: end the running generation (final commit) and continue on a new one.

        Call it at a pause.  Audio keeps flowing through ``send_audio``: it is held while the
        old generation drains and sent to the next one, so nothing is lost or duplicated.
        Returns whether a generation was ended (False when none runs or one is draining).
        """
        if self.state is not AsrState.STREAMING or self._gen_final_sent:
            return False  # nothing running, or already draining
        self._advance(Input.END)
        self._send_final()
        return True

    def end_stream(self) -> None:
        """The leg is over: send what is buffered, end the generation, close after ``done``."""
        if self._ending:
            raise InvalidState(f"Cannot end the stream twice (state {self.state.name})")
        was = self.state
        self._advance(Input.END)
        self._ending = True
        if was is AsrState.STREAMING:
            self._send_final()
        elif was is AsrState.READY:
            self._flush()

    def fail(self, reason: str) -> None:
        """Give up on the leg (server unreachable for too long, or a permanent error).

        Every sample not yet transcribed is reported as a gap.
        """
        if self.state is AsrState.CLOSED:
            return
        self._advance(Input.FATAL)
        self._drop(len(self._buf) // 2, reason)
        self._events.append(Closed(reason))

    # -- internals -----------------------------------------------------------------------------

    def _advance(self, what: Input) -> None:
        by_server = what in (Input.SESSION_CREATED, Input.DELTA, Input.DONE)
        self.state = transition(_TRANSITIONS, self.state, what, by_server=by_server)

    def _receive_delta(self, delta: str) -> None:
        step = self._gen_steps
        self._gen_steps += 1
        self._gen_text.append(delta)
        gen_end = self._gen_start + self._gen_sent
        start = min(self._gen_start + step * CHUNK_SAMPLES, gen_end)
        end = min(start + CHUNK_SAMPLES, gen_end)
        # Frames up to this one are transcribed: keep only what a replay might still need.
        self._trim(end)
        self._events.append(StepText(self.generation, step, delta, start, end))

    def _receive_error(self, event: dict[str, object]) -> None:
        code = event.get("code")
        error = AsrServerError(str(event.get("error", "")), code if isinstance(code, str) else None)
        self._events.append(ServerError(error))
        if not error.retryable:
            self.fail(f"ASR server error {error.code}: {error.action}")

    def _end_generation(self, *, text: str, completion_tokens: int | None, solicited: bool) -> None:
        """Book-keep the end of the running generation (done received, or socket lost)."""
        sent_end = self._gen_start + self._gen_sent
        if solicited:
            covered = self._gen_sent  # the server pads and transcribes all of it
        else:
            # Stopped early: the next generation starts at the first frame without a step.
            covered = min(self._gen_steps * CHUNK_SAMPLES, self._gen_sent)
        self._events.append(
            GenerationEnded(
                generation=self.generation,
                start=self._gen_start,
                samples=covered,
                steps=self._gen_steps,
                text=text or "".join(self._gen_text),
                completion_tokens=completion_tokens,
                solicited=solicited,
            )
        )
        resume = self._gen_start + covered
        self._trim(resume)
        if resume < self._buf_start:
            # Sent audio we could not keep for replay (buffer bound): now it is a real gap.
            lost_end = min(self._buf_start, sent_end)
            if lost_end > resume:
                self._events.append(
                    AudioDropped(resume, lost_end - resume, "ASR backlog over the buffer bound")
                )
        self._gen_start = max(resume, self._buf_start)
        self._gen_sent = 0
        self._gen_steps = 0
        self._gen_text = []
        self._gen_final_sent = False

    def _flush(self) -> None:
        """In READY: start a generation for buffered audio, or finish the leg."""
        if self.state is not AsrState.READY:
            return
        if self._buf:
            self.state = AsrState.STREAMING
            self._start_generation()
            if self._ending:
                self._send_final()
        elif self._ending:
            self.state = AsrState.CLOSED
            self._events.append(Closed("leg ended"))

    def _start_generation(self) -> None:
        """Non-final commit = start a generation (§1.5 item 3), then send the buffer."""
        self.generation += 1
        self._gen_start = self._buf_start
        self._out.append(_COMMIT)
        self._send_appends()

    def _send_appends(self) -> None:
        """Append every buffered byte the running generation has not received yet."""
        offset = (self._gen_start - self._buf_start + self._gen_sent) * 2
        if offset >= len(self._buf):
            return
        pending = self._buf[offset:]
        # One append per 80 ms chunk: the model's step size (vllm-realtime.md §2.5).
        step = CHUNK_SAMPLES * 2
        for i in range(0, len(pending), step):
            audio = base64.b64encode(pending[i : i + step]).decode("ascii")
            self._out.append(_APPEND_HEAD + audio + '"}')
        self._gen_sent += len(pending) // 2

    def _send_final(self) -> None:
        # "Send exactly one final per utterance and wait for done" (§1.5 item 5).
        self._out.append(_COMMIT_FINAL)
        self._gen_final_sent = True
        self.state = AsrState.FINALIZING

    def _bound_buffer(self) -> None:
        excess = len(self._buf) // 2 - self.max_buffer_samples
        if excess > 0:
            self._drop(excess, "ASR backlog over the buffer bound")

    def _drop(self, samples: int, reason: str) -> None:
        """Drop the oldest ``samples`` of the buffer; report the part never sent as a gap.

        Audio the running generation already has is only replay data: losing it becomes a gap
        only if that generation ends before stepping over it (see ``_end_generation``).
        """
        if samples <= 0:
            return
        start, end = self._buf_start, self._buf_start + samples
        del self._buf[: samples * 2]
        self._buf_start = end
        sent_end = start
        if self.state in (AsrState.STREAMING, AsrState.FINALIZING):
            sent_end = max(start, min(end, self._gen_start + self._gen_sent))
        if end > sent_end:
            self._events.append(AudioDropped(sent_end, end - sent_end, reason))
