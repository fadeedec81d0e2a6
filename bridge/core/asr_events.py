"""What a leg's ASR session tells the leg, in both dialects, and what the adapter drives.

The vLLM dialect (:mod:`bridge.core.asr_protocol`) reports text per 80 ms step (``StepText``)
and generations (``GenerationEnded``); the OpenAI dialect (:mod:`bridge.core.openai_protocol`)
per committed turn (``TurnDelta``/``TurnSegment``/``TurnCompleted``).  Both report sessions,
dropped audio, server errors and the end alike.  All positions are 16 kHz samples on the leg
clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bridge.errors import AsrServerError


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str


@dataclass(frozen=True, slots=True)
class StepText:
    """One ``transcription.delta``: the text of one 80 ms frame on the leg clock.

    ``frame_start``/``frame_end`` are 16 kHz samples since the leg started; for the steps the
    server runs on its right padding after a final, they are clamped to the generation's end.
    """

    generation: int
    step: int
    text: str
    frame_start: int
    frame_end: int


@dataclass(frozen=True, slots=True)
class GenerationEnded:
    """A generation finished: ``steps`` deltas for ``samples`` of audio from ``start``."""

    generation: int
    start: int
    samples: int
    steps: int
    text: str
    completion_tokens: int | None
    solicited: bool  # False: the server stopped it (max_model_len) or the connection dropped


@dataclass(frozen=True, slots=True)
class AudioDropped:
    """Buffered audio had to be dropped (buffer bound reached): a gap on the leg clock."""

    start: int
    samples: int
    reason: str


@dataclass(frozen=True, slots=True)
class ServerError:
    error: AsrServerError


@dataclass(frozen=True, slots=True)
class Closed:
    """The leg's ASR stream is over; no more events follow."""

    reason: str


AsrEvent = SessionStarted | StepText | GenerationEnded | AudioDropped | ServerError | Closed


@dataclass(frozen=True, slots=True)
class TurnDelta:
    """More text of turn ``turn``, as it comes.  ``start``/``end``: the turn's speech on the leg
    clock (all its audio when the caller did not say where speech was)."""

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
    """The final text of turn ``turn``; ``start``/``end`` as in :class:`TurnDelta`."""

    turn: int
    text: str
    start: int
    end: int


OpenAiEvent = (
    SessionStarted | TurnDelta | TurnSegment | TurnCompleted | AudioDropped | ServerError | Closed
)


class AsrSession(Protocol):
    """A sans-I/O session of either dialect, as :class:`bridge.asr.client.AsrClient` drives it."""

    @property
    def closed(self) -> bool: ...
    @property
    def awaiting_reply(self) -> bool: ...
    @property
    def wants_new_session(self) -> bool: ...
    @property
    def samples_unacknowledged(self) -> int: ...
    @property
    def samples_in_flight(self) -> int: ...
    def receive_connected(self, *, model: str | None = None) -> None: ...
    def receive_connection_lost(self) -> None: ...
    def receive_message(self, text: str) -> None: ...
    def send_audio(self, pcm16: bytes, *, speech: bool = True) -> None: ...
    def recycle(self) -> bool: ...
    def end_stream(self) -> None: ...
    def fail(self, reason: str) -> None: ...
    def data_to_send(self) -> list[str]: ...
    def events_received(self) -> Sequence[AsrEvent | OpenAiEvent]: ...


E = TypeVar("E")


class SessionBuffer(Generic[E]):
    """What both dialects' session objects keep alike: the frames to send and the events for
    the application (each returned once, in order), and the 16 kHz PCM16 audio not yet known
    to be transcribed, from leg-clock sample ``_buf_start`` on."""

    def __init__(self) -> None:
        self._out: list[str] = []
        self._events: list[E] = []
        self._buf = bytearray()
        self._buf_start = 0

    def data_to_send(self) -> list[str]:
        """Text frames to send, in order; each call returns them once."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[E]:
        """Events for the application, in order; each call returns them once."""
        events, self._events = self._events, []
        return events

    @property
    def samples_received(self) -> int:
        """Leg clock: every sample handed to ``send_audio`` so far (dropped ones included)."""
        return self._buf_start + len(self._buf) // 2

    def _trim(self, upto: int) -> None:
        """Forget the audio before leg-clock sample ``upto`` (it needs no replay)."""
        drop = min(upto - self._buf_start, len(self._buf) // 2)
        if drop > 0:
            del self._buf[: drop * 2]
            self._buf_start += drop
