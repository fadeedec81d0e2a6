"""Inputs that are hard for a streaming recognizer, generated (flite, numpy), never stored.

Each is a 16 kHz mono float32 array.  They stress what a pause-driven recognizer relies on:

* :func:`continuous_speech`: sentences run together, no pause longer than ``max_gap_ms``
  (100 ms) for ``seconds``, room noise at -45 dBFS in the gaps (the issue-13 deadlock);
* :func:`speech_from_sample_zero`: speech that starts at the first sample;
* :func:`noise_only`, :func:`steady_tone`, :func:`silence`: nothing to recognize;
* :func:`clipped`: speech driven 20 dB into hard clipping.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tests.engine.speech import SAMPLE_RATE_HZ, flite

Audio = npt.NDArray[np.float32]

SENTENCES = (
    "thank you for calling the support line how can I help you today",
    "my order number is seven four two and it has not arrived yet",
    "I can see the parcel left the warehouse on monday morning",
    "could you send it again to my office address instead please",
    "of course I will arrange a new delivery for tomorrow afternoon",
    "is there anything else I can do for you before we finish",
)


def dbfs(level_db: float) -> float:
    return float(10 ** (level_db / 20))


def room_noise(samples: int, level_db: float = -45.0, seed: int = 0) -> Audio:
    """Pink-ish noise (white, smoothed) at ``level_db`` dBFS RMS."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(samples + 8).astype(np.float32)
    pink = np.convolve(white, np.ones(8, dtype=np.float32) / 8, mode="valid")[:samples]
    rms = float(np.sqrt(np.mean(pink**2))) or 1.0
    return (pink / rms * dbfs(level_db)).astype(np.float32)


def close_gaps(audio: Audio, max_gap_ms: int = 100, floor_db: float = -40.0) -> Audio:
    """Shorten every run of 10 ms frames quieter than ``floor_db`` to at most ``max_gap_ms``."""
    frame = SAMPLE_RATE_HZ // 100
    frames = audio[: audio.size // frame * frame].reshape(-1, frame)
    quiet = np.sqrt(np.mean(frames**2, axis=1)) < dbfs(floor_db)
    keep, run = [], 0
    for is_quiet, chunk in zip(quiet, frames, strict=True):
        run = run + 1 if is_quiet else 0
        if run * 10 <= max_gap_ms:
            keep.append(chunk)
    return np.concatenate(keep).astype(np.float32)


def continuous_speech(seconds: float = 25.0, max_gap_ms: int = 100, seed: int = 0) -> Audio:
    """Speech with no pause longer than ``max_gap_ms`` for ``seconds``; noise in the gaps."""
    target = int(seconds * SAMPLE_RATE_HZ)
    parts: list[Audio] = []
    total, n = 0, 0
    while total < target:
        sentence = close_gaps(flite(SENTENCES[n % len(SENTENCES)]), max_gap_ms)
        gap = np.zeros(int(max_gap_ms * 0.6 * SAMPLE_RATE_HZ / 1000), dtype=np.float32)
        parts += [sentence, gap]
        total += sentence.size + gap.size
        n += 1
    speech = np.concatenate(parts)[:target]
    return (speech + room_noise(speech.size, seed=seed)).astype(np.float32)


def speech_from_sample_zero() -> Audio:
    speech = flite(SENTENCES[0])  # trimmed: it is loud from its first sample
    return np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)])


def noise_only(seconds: float = 10.0) -> Audio:
    return room_noise(int(seconds * SAMPLE_RATE_HZ), level_db=-30.0, seed=3)


def steady_tone(seconds: float = 10.0, freq_hz: float = 440.0) -> Audio:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (dbfs(-12.0) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def silence(seconds: float = 120.0) -> Audio:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def clipped(gain_db: float = 20.0) -> Audio:
    speech = np.concatenate([flite(SENTENCES[1]), flite(SENTENCES[2])])
    return np.clip(speech * dbfs(gain_db), -1.0, 1.0).astype(np.float32)


def longest_quiet_ms(audio: Audio, floor_db: float = -40.0) -> int:
    """The longest run of 10 ms frames below ``floor_db`` (to check the generator)."""
    frame = SAMPLE_RATE_HZ // 100
    frames = audio[: audio.size // frame * frame].reshape(-1, frame)
    quiet = np.sqrt(np.mean(frames**2, axis=1)) < dbfs(floor_db)
    longest = run = 0
    for is_quiet in quiet:
        run = run + 1 if is_quiet else 0
        longest = max(longest, run)
    return longest * 10
