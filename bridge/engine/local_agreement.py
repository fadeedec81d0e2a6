"""Streaming recognition policy around Whisper: VAD windows and LocalAgreement-2 commits.

Whisper is an offline model; streaming is a policy around it (after Macháček et al.,
"Turning Whisper into Real-Time Transcription System", the LocalAgreement-2 policy):

* an energy VAD (``vad.py``) cuts the stream into utterances at pauses; silence is never decoded
  (no hallucinated "Thank you." on silence, no CPU spent);
* while an utterance goes on, its window (utterance start .. now) is re-decoded every
  ``decode_interval_ms`` (1 s) of new audio, every 2 s when the decode workers are saturated
  (and every ``min_decode_interval_ms`` while they are mostly idle: 1 s too by default, see
  :func:`~bridge.engine.whisper_config.decode_interval_for`); the words two consecutive decodes
  agree on (longest common prefix, compared without case and punctuation) are committed;
* when the utterance ends (a pause of ``min_silence_ms``) it is decoded once more and all its words
  are committed; the next window starts after it;
* a window that grows past ``max_window_ms`` without a pause is cut at the last committed word;
* the stream's *horizon* (the start of the first word not committed yet) lets the server hold
  each 80 ms step until its text is known, so word times read back from the step clock are right.

The decodes themselves are the :class:`Transcriber`'s (``whisper.py``: faster-whisper); this
module only chooses which audio to decode and which words to commit.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bridge.engine.align import HORIZON_ALL, TimedWord
from bridge.engine.vad import EnergyVad, Utterance
from bridge.engine.whisper_config import SAMPLE_RATE_HZ, WhisperConfig

__all__ = ["Transcriber", "WhisperStream"]

_PUNCT = re.compile(r"[^\w\s'-]+")

Words = list[tuple[str, float, float]]  # (text, start_s, end_s) within the decoded audio


class Transcriber(Protocol):
    """What a stream needs from its recognizer (``whisper.WhisperRecognizer``)."""

    @property
    def config(self) -> WhisperConfig: ...

    @property
    def stats(self) -> dict[str, float]:
        """Totals over all streams: ``decodes``, ``final_decodes``, ``decode_wall_s``."""
        ...

    def decode_interval_ms(self) -> int:
        """Audio (ms) between partial decodes now (fewer when the workers are busy)."""
        ...

    def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None, prompt: str | None
    ) -> tuple[Words, str | None, float]:
        """Words of ``audio``, the language and its probability (blocking; a worker thread)."""
        ...


def _norm(text: str) -> str:
    return _PUNCT.sub("", text).strip().lower()


@dataclass(frozen=True, slots=True)
class _Job:
    start: int
    end: int
    final: bool  # commit everything (utterance closed, or end of audio)
    closes_stream: bool


class WhisperStream:
    """One generation's audio: VAD, windows, LocalAgreement-2 commits."""

    def __init__(self, recognizer: Transcriber, language: str | None = None) -> None:
        cfg = recognizer.config
        self._recognizer = recognizer
        self._cfg = cfg
        self._lock = threading.Lock()
        self._vad = EnergyVad(cfg.vad)
        self._chunks: list[npt.NDArray[np.float32]] = []
        self._audio_start = 0  # absolute sample of the first chunk's first sample
        self._received = 0
        self._closed: deque[Utterance] = deque()
        self._window_start = 0
        self._committed_end = 0
        self._settled = 0  # no word still to come ends before this (monotonic)
        self._committed: list[TimedWord] = []  # the last ones: de-duplication and prompt
        self._hypothesis: list[TimedWord] = []
        self._last_decode_end = 0
        self._ended = False
        self._finished = False
        self._busy = False
        self._out: list[TimedWord] = []
        self.language = language or cfg.language
        self.decode_count = 0
        self.decoded_samples = 0

    # ---- loop side

    def accept_audio(self, pcm16: bytes) -> None:
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        with self._lock:
            self._chunks.append(samples)
            self._received += samples.size
            self._vad.accept(samples)
            self._closed.extend(self._vad.take_closed())
            if not self._closed and self._vad.open_start is None and not self._hypothesis:
                # Silence: nothing can still be said before the VAD's quiet point.
                self._window_start = max(self._window_start, self._vad.quiet_until)
            self._trim()

    def end_audio(self) -> None:
        with self._lock:
            self._ended = True

    def needs_decode(self) -> bool:
        with self._lock:
            return not self._busy and self._next_job() is not None

    def urgent_decode(self) -> bool:
        with self._lock:
            job = self._next_job()
            return job is not None and job.final

    def take_words(self) -> list[TimedWord]:
        with self._lock:
            out, self._out = self._out, []
            return out

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._finished

    @property
    def horizon_samples(self) -> int:
        with self._lock:
            if self._finished:
                return HORIZON_ALL
            if self._closed:
                region_start: int | None = self._closed[0].start
            else:
                region_start = self._vad.open_start
            if region_start is None:
                if self._ended:  # final decode pending; nothing left in speech
                    return max(self._settled, self._vad.processed)
                return max(self._settled, self._vad.quiet_until)
            return max(self._settled, region_start)

    # ---- worker side

    def _next_job(self) -> _Job | None:
        cfg = self._cfg
        if self._finished:
            return None
        if self._closed:
            utt = self._closed[0]
            end = min(utt.end if utt.end is not None else self._received, self._received)
            return _Job(max(self._window_start, utt.start), end, final=True, closes_stream=False)
        open_start = self._vad.open_start
        if self._ended:
            start = max(
                self._window_start, open_start if open_start is not None else self._received
            )
            return _Job(start, self._received, final=True, closes_stream=True)
        if open_start is None:
            return None
        start = max(self._window_start, open_start)
        interval = self._recognizer.decode_interval_ms()
        due = self._received - self._last_decode_end >= cfg.samples(interval)
        if due and self._received - start >= cfg.samples(cfg.min_window_ms):
            return _Job(start, self._received, final=False, closes_stream=False)
        return None

    def decode(self) -> None:
        with self._lock:
            job = self._next_job()
            if job is None or self._busy:
                return
            self._busy = True
            audio = self._slice(job.start, job.end)
            prompt = self._prompt_before(job.start)
            language = self.language
        started = time.monotonic()
        try:
            words: list[tuple[str, float, float]] = []
            if audio.size >= self._cfg.samples(100):
                words, detected, probability = self._recognizer.transcribe(
                    audio, language=language, prompt=prompt
                )
                if language is None and probability >= 0.5:
                    language = detected
        finally:
            with self._lock:
                self._busy = False
        with self._lock:
            self.decode_count += 1
            self.decoded_samples += audio.size
            stats = self._recognizer.stats
            stats["decodes"] += 1
            stats["final_decodes"] += int(job.final)
            stats["decode_wall_s"] += time.monotonic() - started
            self.language = language
            self._apply(job, words)

    def _apply(self, job: _Job, raw: list[tuple[str, float, float]]) -> None:
        hypothesis = self._new_words(job, raw)
        if job.final:
            self._commit(hypothesis)
            self._hypothesis = []
            self._window_start = max(self._window_start, job.end)
            self._settled = max(self._settled, job.end)
            if self._closed and not job.closes_stream:
                self._closed.popleft()
            if job.closes_stream:
                self._finished = True
        else:
            # LocalAgreement-2: commit the prefix this decode shares with the previous one.
            agreed = 0
            for old, new in zip(self._hypothesis, hypothesis, strict=False):
                if _norm(old.text) != _norm(new.text):
                    break
                agreed += 1
            commit, rest = hypothesis[:agreed], hypothesis[agreed:]
            too_long = job.end - job.start > self._cfg.samples(self._cfg.max_window_ms)
            if too_long:
                # No pause for too long: commit what is well behind the audio end, then cut.
                limit = job.end - self._cfg.samples(5000)
                while rest and rest[0].end_samples <= limit:
                    commit.append(rest.pop(0))
            self._commit(commit)
            self._hypothesis = rest
            if not rest:
                # Nothing pending: only a word still being spoken at the window end can follow.
                tail = job.end - self._cfg.samples(1000)
                self._settled = max(self._settled, tail)
                if too_long:
                    self._window_start = max(self._window_start, tail)
            if too_long:
                self._window_start = max(self._window_start, self._committed_end)
        self._last_decode_end = job.end
        self._trim()

    def _new_words(self, job: _Job, raw: list[tuple[str, float, float]]) -> list[TimedWord]:
        """Absolute-time words of a decode, minus those already committed."""
        words = []
        tolerance = self._cfg.samples(100)
        for text, start_s, end_s in raw:
            start = job.start + round(start_s * SAMPLE_RATE_HZ)
            end = min(job.end, job.start + round(end_s * SAMPLE_RATE_HZ))
            if not _norm(text):
                continue
            if start < self._committed_end - tolerance:
                continue
            words.append(TimedWord(text, start, max(start, end)))
        # The first words may repeat the last committed ones (timing jitter): drop the overlap.
        for n in range(min(5, len(words), len(self._committed)), 0, -1):
            tail = [_norm(w.text) for w in self._committed[-n:]]
            if [_norm(w.text) for w in words[:n]] == tail:
                return words[n:]
        return words

    def _commit(self, words: list[TimedWord]) -> None:
        for word in words:
            self._out.append(word)
            self._committed.append(word)
            self._committed_end = max(self._committed_end, word.end_samples)
            self._settled = max(self._settled, word.end_samples)
        del self._committed[:-64]

    def _prompt_before(self, start: int) -> str:
        """Committed text that ends before the window: context, never words the window holds."""
        if not self._cfg.prompt_chars:
            return ""
        text = "".join(w.text for w in self._committed if w.end_samples <= start)
        return text[-self._cfg.prompt_chars :]

    def _slice(self, start: int, end: int) -> npt.NDArray[np.float32]:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        audio = self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)
        return audio[start - self._audio_start : end - self._audio_start].copy()

    def _trim(self) -> None:
        """Forget audio no window can need again (keeps a leg's memory bounded)."""
        keep_from = self._window_start
        if self._closed:
            keep_from = min(keep_from, self._closed[0].start)
        open_start = self._vad.open_start
        if open_start is not None:
            keep_from = min(keep_from, open_start)
        drop = keep_from - self._audio_start
        if drop > SAMPLE_RATE_HZ:
            audio = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks = [audio[drop:]]
            self._audio_start = keep_from
