"""Voxtral Realtime's step clock: when vLLM runs an engine step, in client samples.

Shared by the client (``asr_protocol``: word times, expected delta counts, step lag) and the
embedded engine's server side (``bridge.engine.protocol``: when a delta is due).  Pure.

The constants are Voxtral Mini 4B Realtime's, and the defaults.  Where the model's directory is
at hand (``asr.model_dir``, ``bridge check --model-dir``), :func:`clock_for_model` builds the
clock from the values the model's own ``tekken.json`` gives through mistral-common
(``bridge/model_files.py``), and says why when the bridge cannot drive that model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SAMPLE_RATE_HZ: Final = 16_000
# Voxtral: frame_rate 12.5 -> raw_audio_length_per_tok = 16000 // 12.5 = 1280 samples (80 ms).
STEP_SAMPLES: Final = 1280
STEP_MS: Final = 80
# mistral-common: streaming_n_left_pad_tokens = 32, look-ahead 2.5 ms = 40 samples,
# right pad = (delay_tokens + 1) + OFFLINE_STREAMING_BUFFER_TOKENS (10) tokens.
LEFT_PAD_TOKENS: Final = 32
LOOK_AHEAD_SAMPLES: Final = 40
OFFLINE_STREAMING_BUFFER_TOKENS: Final = 10


@dataclass(frozen=True, slots=True)
class StepClock:
    """When Voxtral's engine steps run, in client samples (vllm-realtime.md §2.2, §2.4).

    The left pad (32 tokens of zeros) is prepended to the first real audio; the first frame covers
    the 1 + 32 + delay-token prompt plus 2.5 ms look-ahead; each later step adds 1280 samples.
    After ``final`` the right pad (delay + 11 tokens) lets the remaining steps run.
    """

    transcription_delay_ms: int = 480
    left_pad_tokens: int = LEFT_PAD_TOKENS
    look_ahead_samples: int = LOOK_AHEAD_SAMPLES

    def __post_init__(self) -> None:
        if self.transcription_delay_ms % STEP_MS or not 0 < self.transcription_delay_ms <= 2400:
            raise ValueError(
                f"transcription_delay_ms must be a multiple of {STEP_MS} between 80 and 2400, "
                f"got {self.transcription_delay_ms}"
            )

    @property
    def delay_tokens(self) -> int:
        return self.transcription_delay_ms // STEP_MS

    @property
    def delay_samples(self) -> int:
        return self.delay_tokens * STEP_SAMPLES

    @property
    def prompt_tokens(self) -> int:
        """BOS + left-pad + delay streaming tokens: 39 at 480 ms."""
        return 1 + self.left_pad_tokens + self.delay_tokens

    def session_seconds(self, max_model_len: int) -> float:
        """Audio one generation can hold: one token per 80 ms after the prompt."""
        return max(0, max_model_len - self.prompt_tokens) * STEP_MS / 1000

    @property
    def first_step_samples(self) -> int:
        """Client samples the first step needs: 9000 (562.5 ms) at 480 ms delay."""
        return (1 + self.delay_tokens) * STEP_SAMPLES + self.look_ahead_samples

    def step_end_samples(self, step: int) -> int:
        """Client audio (incl. look-ahead) that step ``step`` (0-based) has seen."""
        return self.first_step_samples + step * STEP_SAMPLES

    def steps_available(self, received_samples: int, *, ended: bool) -> int:
        """Steps the engine can run with ``received_samples`` of client audio.

        ``ended``: the final marker was consumed, so the right pad is there too.  No audio at all
        runs no step (the left pad is only prepended before the first real chunk).
        """
        if received_samples <= 0:
            return 0
        if ended:
            right_pad = (self.delay_tokens + 1 + OFFLINE_STREAMING_BUFFER_TOKENS) * STEP_SAMPLES
            total = received_samples + right_pad
        else:
            total = received_samples
        if total < self.first_step_samples:
            return 0
        return (total - self.first_step_samples) // STEP_SAMPLES + 1


def clock_for_model(
    *,
    sampling_rate: int,
    frame_rate: float,
    transcription_delay_ms: float,
    left_pad_tokens: int,
    look_ahead_ms: float,
    streaming: bool,
) -> StepClock:
    """The step clock of a model, from its audio settings (mistral-common's ``AudioConfig``).

    Raises:
        ValueError: the bridge cannot drive this model; the message says why.
    """
    if not streaming:
        raise ValueError(
            "its transcription_format is not 'streaming': not a Voxtral Realtime model (an "
            "offline Voxtral answers whole files, not /v1/realtime sessions)"
        )
    if sampling_rate != SAMPLE_RATE_HZ or frame_rate * STEP_SAMPLES != SAMPLE_RATE_HZ:
        raise ValueError(
            f"it takes {sampling_rate} Hz audio at {frame_rate:g} frames/s; the bridge sends "
            f"{SAMPLE_RATE_HZ} Hz in {STEP_MS} ms chunks, one per frame of Voxtral Realtime "
            f"({SAMPLE_RATE_HZ / STEP_SAMPLES:g} frames/s)"
        )
    delay = int(transcription_delay_ms)
    if delay != transcription_delay_ms:  # StepClock checks the whole milliseconds' range
        raise ValueError(f"transcription_delay_ms {transcription_delay_ms:g} is not whole")
    return StepClock(
        transcription_delay_ms=delay,
        left_pad_tokens=left_pad_tokens,
        look_ahead_samples=round(look_ahead_ms * SAMPLE_RATE_HZ / 1000),
    )
