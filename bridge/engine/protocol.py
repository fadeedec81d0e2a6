"""Server side of vLLM's ``/v1/realtime`` protocol, sans I/O.

One :class:`RealtimeServerProtocol` per websocket.  Text frames go in through
:meth:`~RealtimeServerProtocol.receive_text`; what the server must do comes out as events
(:class:`SendFrame`, :class:`GenerationStarted`, :class:`AudioReceived`, :class:`AudioEnded`).
No sockets, no clock, no threads: the I/O shell (``server.py``) passes in the session id and
creation time and drives the *step clock* — :attr:`~RealtimeServerProtocol.steps_ready` says how
many ``transcription.delta`` events the audio received so far makes due, exactly as vLLM 0.33's
``VoxtralRealtimeBuffer`` would run engine steps (vllm-realtime.md §2.2–2.4, vllm-cpu.md §4).

Behaviour mirrored from vLLM's ``RealtimeConnection`` (vllm-realtime.md §1.2–1.5):

* ``session.created`` first; ``session.update`` is never acknowledged; only ``model`` is read
  (and, our extension, an optional ``language`` such as ``"fr"`` for the session's recognizer).
* Any commit before a successful ``session.update`` → ``model_not_validated``.
* Audio is appended to one connection queue whether or not a generation runs.  A non-final commit
  starts a generation ("ignoring commit" if one runs); ``final`` puts an end-of-audio marker in the
  queue.  A generation consumes the queue up to that marker; after ``transcription.done`` the
  queue is cleared ("Clear queue for next utterance"), so audio sent between ``final`` and
  ``done`` is dropped, and a stray marker ends the next generation at once.
* One delta per 80 ms step: the first once ``(1 + delay_tokens) * 1280 + 40`` client samples are
  in (9000 = 562.5 ms at 480 ms delay), then one per 1280 samples; after ``final`` the right pad
  makes ``floor((N + 12760) / 1280) + 1`` steps in all.  ``done.text`` is the concatenation of
  the deltas; ``usage = {prompt_tokens: 39, completion_tokens: K, total_tokens: 39 + K}``.
* The stream stops by itself when ``prompt_tokens + K`` reaches ``max_model_len``: an unsolicited
  ``done``.

Our own addition (not in vLLM): when the engine has no free leg, the commit that would start a
generation is answered with ``{"type":"error","error":...,"code":"capacity_exceeded"}`` and
nothing starts; the client may retry the commit later.  The socket stays open.
"""

from __future__ import annotations

import binascii
import enum
import json
import re
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

from bridge.core.step_clock import (
    SAMPLE_RATE_HZ,
    STEP_SAMPLES,
    StepClock,
)

__all__ = [
    "SAMPLE_RATE_HZ",
    "STEP_SAMPLES",
    "AudioEnded",
    "AudioReceived",
    "Event",
    "GenerationStarted",
    "RealtimeServerProtocol",
    "SendFrame",
    "StepClock",
    "error_frame",
    "sanitize_message",
]

# VLLM_MAX_AUDIO_CLIP_FILESIZE_MB default 25, checked per append against the sample count.
DEFAULT_MAX_APPEND_MB: Final = 25
# pydantic 2.14 (vLLM 0.33's) error-message link.
_PYDANTIC_URL: Final = "https://errors.pydantic.dev/2.14/v/"

MODEL_NOT_VALIDATED: Final = (
    "Model not validated. Make sure to validate the model by sending a session.update event."
)


# --------------------------------------------------------------------------- events out


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Send this text frame to the client."""

    text: str


@dataclass(frozen=True, slots=True)
class GenerationStarted:
    """A non-final commit started generation number ``generation`` (1, 2, ...)."""

    generation: int


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """PCM16LE mono 16 kHz audio for the running generation (even length, never empty)."""

    generation: int
    pcm16: bytes


@dataclass(frozen=True, slots=True)
class AudioEnded:
    """The running generation reached the ``final`` marker: no more audio will come."""

    generation: int


Event = SendFrame | GenerationStarted | AudioReceived | AudioEnded


# --------------------------------------------------------------------------- frames


def _dumps(obj: object) -> str:
    # pydantic ``model_dump_json``: compact, nulls kept, raw UTF-8.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def error_frame(message: str, code: str | None) -> str:
    """``{"type":"error","error":message,"code":code}`` exactly as vLLM serializes it."""
    return _dumps({"type": "error", "error": message, "code": code})


def session_created_frame(session_id: str, created: int) -> str:
    return _dumps({"type": "session.created", "id": session_id, "created": created})


def delta_frame(delta: str) -> str:
    return _dumps({"type": "transcription.delta", "delta": delta})


def done_frame(text: str, prompt_tokens: int, completion_tokens: int) -> str:
    usage = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    return _dumps({"type": "transcription.done", "text": text, "usage": usage})


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
_TRACE = re.compile(r'\n?\s*File "[^"]+", line \d+, in \S+(\n\s+.*)?')
_SYS_PATH = re.compile(r"/(?:home|usr|opt|var|tmp|root|lib|mnt|srv)(?:/[\w.\-]+)+")
_FILE_PATH = re.compile(r"(?:/[\w\-]+)+/[\w\-]+\.\w+")


def sanitize_message(message: str) -> str:
    """vLLM's ``sanitize_message``: strip addresses, traceback lines and file paths."""
    message = _ADDRESS.sub(">", message)
    message = _TRACE.sub("", message)
    message = _SYS_PATH.sub("<path>", message)
    message = _FILE_PATH.sub("<path>", message)
    return message.strip()


def _pydantic_repr(value: object) -> str:
    # pydantic-core shows input_value as repr(), cut to 25 + "..." + 24 characters past 50.
    text = repr(value)
    return text if len(text) <= 50 else f"{text[:25]}...{text[-24:]}"


def _validation_error(model: str, field: str, kind: str, message: str, value: object) -> str:
    """The text of a one-error pydantic ``ValidationError`` (what vLLM puts in processing_error)."""
    return (
        f"1 validation error for {model}\n{field}\n  {message} [type={kind}, "
        f"input_value={_pydantic_repr(value)}, input_type={type(value).__name__}]\n"
        f"    For further information visit {_PYDANTIC_URL}{kind}"
    )


class _InvalidEvent(Exception):
    """A client event pydantic would reject; the message is what vLLM sends back."""


_TRUE_STRINGS: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_STRINGS: Final = frozenset({"0", "off", "f", "false", "n", "no"})
_NOT_BOOL: Final = ("bool_type", "Input should be a valid boolean")
_BOOL_PARSING: Final = (
    "bool_parsing",
    "Input should be a valid boolean, unable to interpret input",
)


def _parse_final(event: dict[str, object]) -> bool:
    """``InputAudioBufferCommit.final: bool = False`` in pydantic's lax mode."""
    value = event.get("final", False)
    if isinstance(value, bool):
        return value
    failure = _NOT_BOOL
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, int):
        failure = _BOOL_PARSING
    elif isinstance(value, str):
        if value.lower() in _TRUE_STRINGS:
            return True
        if value.lower() in _FALSE_STRINGS:
            return False
        failure = _BOOL_PARSING
    kind, message = failure
    raise _InvalidEvent(_validation_error("InputAudioBufferCommit", "final", kind, message, value))


def _parse_audio(event: dict[str, object]) -> str:
    """``InputAudioBufferAppend.audio: str`` (required)."""
    model = "InputAudioBufferAppend"
    if "audio" not in event:
        raise _InvalidEvent(_validation_error(model, "audio", "missing", "Field required", event))
    value = event["audio"]
    if not isinstance(value, str):
        message = "Input should be a valid string"
        raise _InvalidEvent(_validation_error(model, "audio", "string_type", message, value))
    return value


_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/=]")


def _b64decode(text: str) -> bytes:
    """pybase64's ``b64decode(text)``: drop non-alphabet characters, then decode strictly."""
    data = _NOT_BASE64.sub("", text).encode("ascii")  # non-ASCII: ValueError, as in pybase64
    return binascii.a2b_base64(data, strict_mode=True)


# --------------------------------------------------------------------------- protocol


class _Final(enum.Enum):
    MARKER = "final"


_QueueItem = bytes | _Final


class RealtimeServerProtocol:
    """One ``/v1/realtime`` connection on the server side.

    ``model_names``: the served model names ``session.update`` accepts (an empty name always
    passes, as in vLLM).  ``acquire_leg``: called once, when this connection first starts a
    generation; ``False`` means the engine is full (``capacity_exceeded``).  The leg is then this
    connection's until it closes; the shell releases it.
    """

    def __init__(
        self,
        *,
        model_names: Collection[str],
        max_model_len: int,
        clock: StepClock | None = None,
        acquire_leg: Callable[[], bool] | None = None,
        capacity_message: str = "The engine is at capacity: no free leg.",
        max_append_mb: float = DEFAULT_MAX_APPEND_MB,
    ) -> None:
        self.clock = clock or StepClock()
        if max_model_len <= self.clock.prompt_tokens:
            raise ValueError(
                f"max_model_len must exceed the {self.clock.prompt_tokens}-token streaming prompt, "
                f"got {max_model_len}"
            )
        self._model_names = frozenset(model_names)
        self.max_model_len = max_model_len
        self._acquire_leg = acquire_leg
        self._capacity_message = capacity_message
        self._max_append_samples = max_append_mb * 1024**2
        self.model_validated = False
        self.language: str | None = None
        self.holds_leg = False
        self._queue: deque[_QueueItem] = deque()
        # The running generation (0 = none yet).
        self.generation = 0
        self.generating = False
        self._received_samples = 0
        self._ended = False
        self._steps_sent = 0
        self._text_parts: list[str] = []

    # ---- connection

    def connection_made(self, session_id: str, created: int) -> SendFrame:
        """The first frame: ``session.created`` (sent on accept, before reading anything)."""
        return SendFrame(session_created_frame(session_id, created))

    # ---- frames in

    def receive_text(self, text: str) -> list[Event]:
        """Handle one client text frame; return what to do, in order."""
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            return [SendFrame(error_frame("Invalid JSON", "invalid_json"))]
        if not isinstance(event, dict):
            # vLLM calls event.get(...) on whatever json.loads returned.
            message = f"'{type(event).__name__}' object has no attribute 'get'"
            return [SendFrame(error_frame(sanitize_message(message), "processing_error"))]
        try:
            return self._handle(event)
        except _InvalidEvent as exc:
            return [SendFrame(error_frame(sanitize_message(str(exc)), "processing_error"))]

    def _handle(self, event: dict[str, object]) -> list[Event]:
        event_type = event.get("type")
        if event_type == "session.update":
            return self._session_update(event)
        if event_type == "input_audio_buffer.append":
            return self._append(event)
        if event_type == "input_audio_buffer.commit":
            return self._commit(event)
        return [SendFrame(error_frame(f"Unknown event type: {event_type}", "unknown_event"))]

    def _session_update(self, event: dict[str, object]) -> list[Event]:
        model = event.get("model")
        if model is None:
            return [SendFrame(error_frame("Missing required field: model", "invalid_event"))]
        # _is_model_supported: `if not model_name: return True`, else an exact name match.
        if model and not (isinstance(model, str) and model in self._model_names):
            message = sanitize_message(f"The model `{model}` does not exist.")
            return [SendFrame(error_frame(message, "model_not_found"))]
        self.model_validated = True
        # Extension (vLLM 0.33 ignores it; pending upstream PRs add it): a per-session language.
        language = event.get("language")
        if isinstance(language, str) and language:
            self.language = language
        return []

    def _append(self, event: dict[str, object]) -> list[Event]:
        audio = _parse_audio(event)
        try:
            pcm = _b64decode(audio)
        except (binascii.Error, ValueError):
            return [SendFrame(error_frame("Invalid audio data", "invalid_audio"))]
        samples, odd = divmod(len(pcm), 2)
        if odd or samples == 0 or samples > self._max_append_samples:
            return [SendFrame(error_frame("Invalid audio data", "invalid_audio"))]
        self._queue.append(pcm)
        return self._pump()

    def _commit(self, event: dict[str, object]) -> list[Event]:
        if not self.model_validated:
            return [SendFrame(error_frame(MODEL_NOT_VALIDATED, "model_not_validated"))]
        if _parse_final(event):
            self._queue.append(_Final.MARKER)
            return self._pump()
        if self.generating:
            return []  # "Generation already in progress, ignoring commit"
        if not self.holds_leg:
            if self._acquire_leg is not None and not self._acquire_leg():
                return [SendFrame(error_frame(self._capacity_message, "capacity_exceeded"))]
            self.holds_leg = True
        self.generation += 1
        self.generating = True
        self._received_samples = 0
        self._ended = False
        self._steps_sent = 0
        self._text_parts = []
        events: list[Event] = [GenerationStarted(self.generation)]
        events.extend(self._pump())
        return events

    def _pump(self) -> list[Event]:
        """Let the running generation consume the queue up to the final marker."""
        events: list[Event] = []
        if not self.generating or self._ended or self._capped:
            return events
        while self._queue:
            item = self._queue.popleft()
            if item is _Final.MARKER:
                self._ended = True
                events.append(AudioEnded(self.generation))
                break
            assert isinstance(item, bytes)
            self._received_samples += len(item) // 2
            events.append(AudioReceived(self.generation, item))
        return events

    # ---- step clock

    @property
    def _capped(self) -> bool:
        return self._steps_sent >= self.max_model_len - self.clock.prompt_tokens

    @property
    def received_samples(self) -> int:
        """Client samples the running (or last) generation has consumed."""
        return self._received_samples

    @property
    def audio_ended(self) -> bool:
        return self._ended

    @property
    def steps_sent(self) -> int:
        return self._steps_sent

    @property
    def steps_ready(self) -> int:
        """Deltas whose audio is complete and that have not been sent yet."""
        if not self.generating:
            return 0
        available = self.clock.steps_available(self._received_samples, ended=self._ended)
        available = min(available, self.max_model_len - self.clock.prompt_tokens)
        return max(0, available - self._steps_sent)

    @property
    def next_step_end_samples(self) -> int:
        """Audio end (client samples, incl. look-ahead) of the next delta to send."""
        return self.clock.step_end_samples(self._steps_sent)

    @property
    def generation_complete(self) -> bool:
        """All deltas are sent and the stream is over (``final`` or ``max_model_len``)."""
        if not self.generating:
            return False
        if self._capped:
            return True
        if not self._ended:
            return False
        total = self.clock.steps_available(self._received_samples, ended=True)
        return self._steps_sent >= total

    # ---- frames out

    def send_delta(self, text: str) -> SendFrame:
        """The next ``transcription.delta``; only while :attr:`steps_ready` is positive."""
        if self.steps_ready <= 0:
            raise RuntimeError("send_delta() called with no step ready (a bug in the server)")
        self._steps_sent += 1
        self._text_parts.append(text)
        return SendFrame(delta_frame(text))

    def send_done(self) -> SendFrame:
        """``transcription.done`` once :attr:`generation_complete`; clears the queue."""
        if not self.generation_complete:
            raise RuntimeError("send_done() called before the generation completed (a bug)")
        completion = self._steps_sent
        prompt = self.clock.prompt_tokens if completion else 0
        frame = done_frame("".join(self._text_parts), prompt, completion)
        self._finish_generation()
        self._queue.clear()  # "Clear queue for next utterance"
        return SendFrame(frame)

    def fail_generation(self, message: str) -> SendFrame:
        """The engine failed: ``processing_error``; no ``done``, the queue is kept (as vLLM)."""
        self._finish_generation()
        return SendFrame(error_frame(sanitize_message(message), "processing_error"))

    def _finish_generation(self) -> None:
        self.generating = False
