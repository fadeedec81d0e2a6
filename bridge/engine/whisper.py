"""Streaming recognition with faster-whisper (CTranslate2, int8, CPU).

Whisper is an offline model; streaming is a policy around it (after Macháček et al.,
"Turning Whisper into Real-Time Transcription System", the LocalAgreement-2 policy):

* an energy VAD (``vad.py``) cuts the stream into utterances at pauses; silence is never decoded
  (no hallucinated "Thank you." on silence, no CPU spent);
* while an utterance goes on, its window (utterance start .. now) is re-decoded every
  ``decode_interval_ms`` (1 s) of new audio, every 2 s when the decode workers are saturated
  (and every ``min_decode_interval_ms`` while they are mostly idle: 1 s too by default, see
  :func:`decode_interval_for`); the words two consecutive decodes agree on (longest common
  prefix, compared without case and punctuation) are committed;
* when the utterance ends (a pause of ``min_silence_ms``) it is decoded once more and all its words
  are committed; the next window starts after it;
* a window that grows past ``max_window_ms`` without a pause is cut at the last committed word;
* the recognizer's *horizon* (the start of the first word not committed yet) lets the server hold
  each 80 ms step until its text is known, so word times read back from the step clock are right.

Short encoder inputs: faster-whisper's ``transcribe`` always pads the mel features to 30 s (3000
frames), so every decode paid for a 30 s encoder pass (~0.6 s of base on 2 cores) whatever the
window.  CTranslate2's Whisper encoder accepts any length up to 3000 frames, so
:meth:`WhisperRecognizer.transcribe` runs faster-whisper's own pieces (features, timestamp
segments, word alignment, punctuation merging) on the window padded only to
``max(min_encoder_ms, window + encoder_tail_ms)``.  Feeding the bare window makes Whisper loop
("... from March. I am calling about ...") on short clips: it must see a few seconds of padding
after the speech to know the speech ended.  With >= 4 s of tail and >= 8 s in all, the word error
rate of the flite test sentences matched the 30 s input (clean and µ-law) at ~1/6 of the encoder
cost (a decode of a 3 s window: ~0.15-0.2 s instead of ~0.75 s on the shared 2-core box).  No
prompt (``prompt_chars`` 0): with the short input the previous text as prompt made Whisper add
words after a sentence.  The window is cut past ``max_window_ms`` (12 s) so the encoder input
stays <= ~16 s.

Decoding runs in the engine's worker threads; one ``WhisperModel`` serves every leg.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.engine.align import HORIZON_ALL, TimedWord
from bridge.engine.vad import EnergyVad, Utterance, VadConfig

__all__ = [
    "WhisperConfig",
    "WhisperRecognizer",
    "WhisperStream",
    "decode_interval_for",
    "encoder_frames",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
_PUNCT = re.compile(r"[^\w\s'-]+")
_FRAMES_PER_S = 100  # mel frames (10 ms hop)
_ENCODER_MAX_FRAMES = 3000  # Whisper's 30 s window: CTranslate2 accepts at most this
# faster-whisper's defaults (WhisperModel.transcribe)
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0


def _norm(text: str) -> str:
    return _PUNCT.sub("", text).strip().lower()


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    model_path: str  # a CTranslate2 model directory (or a faster-whisper model name)
    language: str | None = None  # None: detect on the first utterance of each generation
    cpu_threads: int = 0  # 0: CTranslate2's default (all cores)
    num_workers: int = 1
    compute_type: str = "int8"
    beam_size: int = 1
    # Partial decodes of an utterance going on: every min_decode_interval_ms of new audio while
    # the decode workers are mostly idle, every decode_interval_ms when they are busy, half as
    # often again when they are saturated (see decode_interval_for).  500 ms when idle halved
    # the delay of one leg's text (p50 1.0 s / p95 1.6 s) but LocalAgreement then committed more
    # early mistakes: flite WER clean 3.0 % / µ-law 4.3 % against 2.0 % / 2.7 % at 1 s.
    decode_interval_ms: int = 1000
    min_decode_interval_ms: int = 1000
    min_window_ms: int = 500
    max_window_ms: int = 12_000
    # Committed text before the window given as Whisper's prompt: 0, because with the short
    # encoder input a prompt made Whisper add words after a sentence ("lunch. inch.",
    # "order. for"): flite WER clean 8 % / µ-law 4.7 % with 120 characters, 2 % / 2.7 % without.
    prompt_chars: int = 0
    # Encoder input: the window padded to at least min_encoder_ms in all and encoder_tail_ms
    # after it (rounded up to whole seconds, at most 30 s).
    min_encoder_ms: int = 8000
    encoder_tail_ms: int = 4000
    full_encoder: bool = False  # faster-whisper's own 30 s padding (slow; for comparisons)
    vad: VadConfig = VadConfig()

    def samples(self, ms: int) -> int:
        return ms * SAMPLE_RATE_HZ // 1000


def encoder_frames(config: WhisperConfig, content_frames: int) -> int:
    """Mel frames the encoder sees for ``content_frames`` of audio (padding included)."""
    if config.full_encoder:
        return _ENCODER_MAX_FRAMES
    wanted = max(
        config.min_encoder_ms * _FRAMES_PER_S // 1000,
        content_frames + config.encoder_tail_ms * _FRAMES_PER_S // 1000,
    )
    whole_seconds = -(-wanted // _FRAMES_PER_S) * _FRAMES_PER_S
    return min(_ENCODER_MAX_FRAMES, max(content_frames, whole_seconds))


def decode_interval_for(config: WhisperConfig, utilization: float) -> int:
    """Audio (ms) between partial decodes of one stream, given how busy the workers are (0..1).

    Text commits about 1.5 intervals after a word (two decodes must agree), so an idle engine
    may decode more often; a saturated one decodes less often instead of falling behind
    (urgent, closing decodes still go first: ``scheduler.py``).
    """
    if utilization < 0.5:
        return min(config.min_decode_interval_ms, config.decode_interval_ms)
    if utilization < 0.9:
        return config.decode_interval_ms
    return 2 * config.decode_interval_ms


class _Utilization:
    """Busy fraction of the decode workers over the last ``window_s`` (thread-safe)."""

    def __init__(self, workers: int, window_s: float = 4.0) -> None:
        self._workers = max(1, workers)
        self._window_s = window_s
        self._lock = threading.Lock()
        self._done: deque[tuple[float, float]] = deque()  # (start, end) of finished decodes
        self._running: dict[int, float] = {}  # thread id -> start

    def started(self, now: float) -> None:
        with self._lock:
            self._running[threading.get_ident()] = now

    def finished(self, now: float) -> None:
        with self._lock:
            start = self._running.pop(threading.get_ident(), now)
            self._done.append((start, now))

    def value(self, now: float) -> float:
        with self._lock:
            since = now - self._window_s
            while self._done and self._done[0][1] <= since:
                self._done.popleft()
            busy = sum(end - max(start, since) for start, end in self._done)
            busy += sum(now - max(start, since) for start in self._running.values())
        return min(1.0, busy / (self._window_s * self._workers))


class WhisperRecognizer:
    """One loaded faster-whisper model; :meth:`open_stream` per generation."""

    def __init__(self, config: WhisperConfig) -> None:
        from faster_whisper import WhisperModel  # heavy: imported when a model loads

        # faster-whisper logs every decode at INFO ("Processing audio with duration ...").
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        self.config = config
        self.model = WhisperModel(
            config.model_path,
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=config.num_workers,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        # Totals over all streams (for bench/metrics): decodes, of which closing, wall seconds.
        self.stats = {"decodes": 0, "final_decodes": 0, "decode_wall_s": 0.0}
        self._utilization = _Utilization(config.num_workers)
        if not self.multilingual and config.language not in (None, "en"):
            raise ValueError(f"{config.model_path} is English-only; got language {config.language}")

    @property
    def description(self) -> str:
        return str(self.config.model_path)

    def open_stream(self, language: str | None = None) -> WhisperStream:
        return WhisperStream(self, language)

    def warm_up(self) -> None:
        """One decode of a second of noise so the first real decode is not slow."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(SAMPLE_RATE_HZ) * 0.01).astype(np.float32)
        self.transcribe(noise, language=self.config.language or "en", prompt=None)

    @property
    def utilization(self) -> float:
        """Busy fraction of the decode workers over the last few seconds."""
        return self._utilization.value(time.monotonic())

    def decode_interval_ms(self) -> int:
        return decode_interval_for(self.config, self.utilization)

    def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None, prompt: str | None
    ) -> tuple[list[tuple[str, float, float]], str | None, float]:
        """Words ``(text, start_s, end_s)`` of ``audio``, the language and its probability.

        faster-whisper's ``generate_segments`` (temperature 0, word timestamps, no conditioning
        on earlier passes) with the encoder fed the window plus a short pad instead of 30 s.
        """
        self._utilization.started(time.monotonic())
        try:
            return self._transcribe(audio, language=language, prompt=prompt)
        finally:
            self._utilization.finished(time.monotonic())

    def _transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None, prompt: str | None
    ) -> tuple[list[tuple[str, float, float]], str | None, float]:
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        cfg, model = self.config, self.model
        features = model.feature_extractor(audio)
        content = features.shape[-1] - 1  # the extractor adds one frame of padding
        if not self.multilingual:
            language = "en"
        probability = 1.0
        tokenizer: Tokenizer | None = None
        prompt_tokens: list[int] = []
        words: list[tuple[str, float, float]] = []
        last_speech_s = 0.0
        seek, passes = 0, 0
        while seek < content and passes < 2 + content // _FRAMES_PER_S // 5:
            passes += 1
            size = min(_ENCODER_MAX_FRAMES, content - seek)
            frames = encoder_frames(cfg, size)
            window = np.zeros((1, features.shape[0], frames), dtype=np.float32)
            window[0, :, :size] = features[:, seek : seek + size]
            encoded = model.model.encode(ctranslate2.StorageView.from_array(window))
            if language is None:
                token, probability = model.model.detect_language(encoded)[0][0]
                language = str(token[2:-2])
            if tokenizer is None:
                tokenizer = Tokenizer(
                    model.hf_tokenizer, self.multilingual, task="transcribe", language=language
                )
                if prompt and prompt.strip():
                    prompt_tokens = tokenizer.encode(" " + prompt.strip())
            # The prompt goes with the first pass only (condition_on_previous_text=False).
            tokens_in = model.get_prompt(tokenizer, prompt_tokens if passes == 1 else [])
            # A loop ("thank you thank you ...") stops at ~12 tokens a second of audio.
            max_length = min(model.max_length, len(tokens_in) + 16 + 12 * size // _FRAMES_PER_S)
            result = model.model.generate(
                encoded,
                [tokens_in],
                beam_size=cfg.beam_size,
                patience=1.0,
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
                max_initial_timestamp_index=50,  # 1 s
            )[0]
            tokens = list(result.sequences_ids[0])
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            if result.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob <= _LOG_PROB_THRESHOLD:
                seek += size
                continue
            segments, next_seek, single_ending = model._split_segments_by_timestamps(
                tokenizer=tokenizer,
                tokens=tokens,
                time_offset=seek / _FRAMES_PER_S,
                segment_size=size,
                segment_duration=size / _FRAMES_PER_S,
                seek=seek,
            )
            model.add_word_timestamps(
                [segments],
                tokenizer,
                encoded,
                size,
                _PREPEND_PUNCTUATIONS,
                _APPEND_PUNCTUATIONS,
                last_speech_timestamp=last_speech_s,
            )
            ends = [w["end"] for s in segments for w in s.get("words", ())]
            if ends:
                last_speech_s = float(ends[-1])
                if not single_ending and ends[-1] > seek / _FRAMES_PER_S:
                    next_seek = round(ends[-1] * _FRAMES_PER_S)
            for segment in segments:
                if (
                    segment["start"] == segment["end"]
                    or not tokenizer.decode(segment["tokens"]).strip()
                ):
                    continue
                for word in segment.get("words", ()):
                    words.append((str(word["word"]), float(word["start"]), float(word["end"])))
            if next_seek <= seek:
                break
            seek = next_seek
        return words, language, float(probability)


@dataclass(frozen=True, slots=True)
class _Job:
    start: int
    end: int
    final: bool  # commit everything (utterance closed, or end of audio)
    closes_stream: bool


class WhisperStream:
    """One generation's audio: VAD, windows, LocalAgreement-2 commits."""

    def __init__(self, recognizer: WhisperRecognizer, language: str | None = None) -> None:
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


def load_whisper(config: WhisperConfig, *, warm_up: bool = True) -> WhisperRecognizer:
    recognizer = WhisperRecognizer(config)
    if warm_up:
        recognizer.warm_up()
    logger.info("whisper model loaded from %s", Path(config.model_path))
    return recognizer
