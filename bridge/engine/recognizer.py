"""What the engine server needs from a speech recognizer, plus a scripted one for tests.

A :class:`Recognizer` is loaded once per engine and shared by all legs; each generation opens
its own :class:`RecognizerStream`.  Threads: ``accept_audio``/``end_audio``/``needs_decode``/
``take_words``/``horizon_samples`` run on the event loop and must be cheap; ``decode`` is the
heavy part and runs in the engine's worker pool, at most one call per stream at a time.
Implementations guard their state with a lock.

All positions are 16 kHz sample counts from the start of the generation's audio.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from bridge.engine.align import HORIZON_ALL, TimedWord

__all__ = ["Recognizer", "RecognizerStream", "ScriptedRecognizer", "TimedWord"]


class RecognizerStream(Protocol):
    def accept_audio(self, pcm16: bytes) -> None:
        """Append PCM16LE mono 16 kHz audio."""

    def end_audio(self) -> None:
        """No more audio: the next decode finishes the stream and commits everything."""

    def needs_decode(self) -> bool:
        """Whether a :meth:`decode` call would do work now."""

    def urgent_decode(self) -> bool:
        """Whether the due decode closes text (held deltas wait for it), not just a partial."""

    def decode(self) -> None:
        """Recognize what is due (worker thread)."""

    def take_words(self) -> list[TimedWord]:
        """Words committed since the last call, in spoken order."""

    @property
    def horizon_samples(self) -> int:
        """Every word not committed yet starts at or after this sample (HORIZON_ALL: none)."""

    @property
    def finished(self) -> bool:
        """``end_audio`` was called and everything is committed."""


class Recognizer(Protocol):
    @property
    def description(self) -> str:
        """What runs, for logs and ``/v1/models`` ``root``."""

    def open_stream(self, language: str | None = None) -> RecognizerStream:
        """A stream for one generation; ``language`` overrides the recognizer's default."""


class _ScriptedStream:
    def __init__(self, words: Sequence[TimedWord], lag_samples: int) -> None:
        self._words = list(words)
        self._lag = lag_samples
        self._lock = threading.Lock()
        self._received = 0
        self._ended = False
        self._decoded_to = 0
        self._done = False
        self._out: list[TimedWord] = []
        self.decodes = 0

    def accept_audio(self, pcm16: bytes) -> None:
        with self._lock:
            self._received += len(pcm16) // 2

    def end_audio(self) -> None:
        with self._lock:
            self._ended = True

    def needs_decode(self) -> bool:
        with self._lock:
            if self._done:
                return False
            return self._ended or self._received - self._lag > self._decoded_to

    def urgent_decode(self) -> bool:
        return True

    def decode(self) -> None:
        with self._lock:
            self.decodes += 1
            upto = HORIZON_ALL if self._ended else self._received - self._lag
            while self._words and self._words[0].end_samples <= upto:
                self._out.append(self._words.pop(0))
            self._decoded_to = upto
            if self._ended:
                self._done = True

    def take_words(self) -> list[TimedWord]:
        with self._lock:
            out, self._out = self._out, []
            return out

    @property
    def horizon_samples(self) -> int:
        with self._lock:
            if self._done:
                return HORIZON_ALL
            nxt = self._words[0].start_samples if self._words else HORIZON_ALL
            return min(nxt, max(0, self._decoded_to))

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._done


class ScriptedRecognizer:
    """Says the given words at the given times, once ``lag_samples`` of later audio is in.

    For protocol and server tests without a model: deterministic text and timing.
    """

    def __init__(self, words: Sequence[TimedWord] = (), *, lag_samples: int = 0) -> None:
        self.words = list(words)
        self.lag_samples = lag_samples
        self.streams: list[_ScriptedStream] = []
        self.languages: list[str | None] = []

    @property
    def description(self) -> str:
        return "scripted"

    def open_stream(self, language: str | None = None) -> RecognizerStream:
        self.languages.append(language)
        stream = _ScriptedStream(self.words, self.lag_samples)
        self.streams.append(stream)
        return stream
