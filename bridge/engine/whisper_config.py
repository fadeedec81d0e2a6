"""Settings of the Whisper recognizer and how often it re-decodes a window (pure).

The measurements behind the defaults are in ``whisper.py`` (short encoder inputs) and
``local_agreement.py`` (the streaming policy).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.step_clock import SAMPLE_RATE_HZ
from bridge.engine.vad import VadConfig

__all__ = ["SAMPLE_RATE_HZ", "WhisperConfig", "decode_interval_for"]


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
