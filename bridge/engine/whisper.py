"""The faster-whisper calls of the engine (CTranslate2, int8, CPU): one model for every leg.

The streaming policy around these decodes (VAD windows, LocalAgreement-2 commits, the horizon)
is ``local_agreement.py``; the settings are ``whisper_config.py``.

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

Decoding runs in the engine's worker threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.engine.local_agreement import WhisperStream, Words
from bridge.engine.whisper_config import SAMPLE_RATE_HZ, WhisperConfig, decode_interval_for

__all__ = [
    "WhisperConfig",
    "WhisperRecognizer",
    "WhisperStream",
    "decode_interval_for",
    "encoder_frames",
    "load_whisper",
]

logger = logging.getLogger(__name__)

_FRAMES_PER_S = 100  # mel frames (10 ms hop)
_ENCODER_MAX_FRAMES = 3000  # Whisper's 30 s window: CTranslate2 accepts at most this
# faster-whisper's defaults (WhisperModel.transcribe)
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0


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
        self.stats: dict[str, float] = {"decodes": 0, "final_decodes": 0, "decode_wall_s": 0.0}
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
    ) -> tuple[Words, str | None, float]:
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
    ) -> tuple[Words, str | None, float]:
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
        words: Words = []
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


def load_whisper(config: WhisperConfig, *, warm_up: bool = True) -> WhisperRecognizer:
    recognizer = WhisperRecognizer(config)
    if warm_up:
        recognizer.warm_up()
    logger.info("whisper model loaded from %s", Path(config.model_path))
    return recognizer
