"""The benchmark's measurements: delta lags, word delays, lag growth, memory.

Word times read back from the step clock exactly as the bridge does: delta ``k`` (0-based)
ends at ``first_step_ms + 80 k`` of audio and describes audio one delay earlier.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence

import numpy as np

from bridge.core.step_clock import SAMPLE_RATE_HZ, StepClock
from bridge.core.step_clock import STEP_SAMPLES as CHUNK_SAMPLES
from bridge.engine.bench_speech import normalize
from bridge.engine.client import StreamResult

__all__ = ["delta_lags", "lag_growth", "percentile", "rss_mb", "spoken_delays", "word_delays"]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def delta_lags(result: StreamResult, clock: StepClock) -> list[float]:
    """Per delta: arrival minus the time its last audio chunk was sent (realtime streams)."""
    lags = []
    for k, arrival in enumerate(result.arrivals_s):
        chunk = (clock.step_end_samples(k) - 1) // CHUNK_SAMPLES
        if chunk < len(result.chunk_sent_s):
            lags.append(arrival - result.chunk_sent_s[chunk])
    return lags


def word_delays(result: StreamResult, clock: StepClock) -> list[float]:
    """Per text delta: arrival minus when the audio of its word's end was sent.

    With the ``end`` anchor a word lands on the first step ending at or after its end + delay,
    so the word ended at ``step_end - delay`` of audio (within 80 ms).
    """
    delays = []
    for k, delta in enumerate(result.deltas):
        if not delta.strip():
            continue
        chunk = (clock.step_end_samples(k) - clock.delay_samples) // CHUNK_SAMPLES
        if chunk < len(result.chunk_sent_s):
            delays.append(result.arrivals_s[k] - result.chunk_sent_s[chunk])
    return delays


def spoken_delays(
    result: StreamResult,
    word_ends_ms: list[tuple[str, float]],
    clock: StepClock,
    *,
    lookahead: int = 6,
) -> list[float]:
    """Per word: arrival of the delta carrying it minus when the audio of its end was sent.

    Words are matched in order (each within the next ``lookahead`` words heard); a word that
    was misrecognized is left out.
    """
    placed: list[tuple[str, int]] = []  # (normalized word, delta index) in spoken order
    for k, delta in enumerate(result.deltas):
        for i, word in enumerate(delta.split(" ")):
            if not word:
                continue
            if i == 0 and not delta.startswith(" ") and placed:
                placed[-1] = (placed[-1][0] + word, placed[-1][1])
                continue
            placed.append((word, k))
    normalized = [(normalize(word), k) for word, k in placed]
    delays = []
    at = 0
    for word, end_ms in word_ends_ms:
        chunk = int(end_ms * SAMPLE_RATE_HZ / 1000) // CHUNK_SAMPLES
        # The first occurrence heard near (not long before) the word's end; the step carrying a
        # word may end a little before its true end (``start`` anchor, recognizer's own ends).
        for j in range(at, min(len(normalized), at + lookahead)):
            text, k = normalized[j]
            near = clock.step_end_samples(k) + SAMPLE_RATE_HZ >= chunk * CHUNK_SAMPLES
            if word in text.split() and near:
                if chunk < len(result.chunk_sent_s):
                    delays.append(result.arrivals_s[k] - result.chunk_sent_s[chunk])
                at = j + 1
                break
    return delays


def lag_growth(result: StreamResult, clock: StepClock) -> float:
    """Least-squares growth of the lag, seconds per second of audio (0: steady)."""
    lags = delta_lags(result, clock)
    if len(lags) < 10:
        return 0.0
    xs = np.arange(len(lags)) * 0.08
    return float(np.polyfit(xs, np.array(lags), 1)[0])
