"""Energy voice-activity detection that cuts a stream into utterances, sans I/O.

Frames of 20 ms; a frame is speech when its level is ``threshold_db`` above an adaptive noise
floor (and above an absolute floor, so digital silence and µ-law idle noise count as silence).
An utterance opens after ``min_speech_ms`` of speech within a short look-back and closes after
``min_silence_ms`` of silence.  Reported utterance bounds are padded by ``pad_ms`` so a decode
window keeps word onsets and tails.  All positions are sample counts from the stream start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["EnergyVad", "Utterance", "VadConfig"]

FRAME_SAMPLES = 320  # 20 ms at 16 kHz


@dataclass(frozen=True, slots=True)
class VadConfig:
    threshold_db: float = 12.0
    absolute_floor_dbfs: float = -55.0
    min_speech_ms: int = 60
    min_silence_ms: int = 500
    pad_ms: int = 200
    sample_rate_hz: int = 16_000

    def frames(self, ms: int) -> int:
        return max(1, ms * self.sample_rate_hz // 1000 // FRAME_SAMPLES)

    def samples(self, ms: int) -> int:
        return ms * self.sample_rate_hz // 1000


@dataclass(frozen=True, slots=True)
class Utterance:
    """Speech from ``start`` to ``end`` (samples, padded); ``end`` is None while it goes on."""

    start: int
    end: int | None


class EnergyVad:
    """Feed samples with :meth:`accept`; read closed and open utterances."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._rest = np.zeros(0, dtype=np.float32)
        self.processed = 0  # samples classified so far
        self._floor_db: float | None = None
        self._speech_run = 0
        self._silence_run = 0
        self._open_start: int | None = None
        self._last_speech_end = 0
        self.closed: list[Utterance] = []  # closed utterances not yet taken

    @property
    def open_start(self) -> int | None:
        """Padded start of the utterance going on now, if any."""
        if self._open_start is None:
            return None
        return max(0, self._open_start - self.config.samples(self.config.pad_ms))

    @property
    def in_speech(self) -> bool:
        return self._open_start is not None

    @property
    def quiet_until(self) -> int:
        """Before this sample no utterance can still open (onset detection lag + pad)."""
        cfg = self.config
        guard = cfg.samples(cfg.pad_ms) + cfg.frames(cfg.min_speech_ms) * 2 * FRAME_SAMPLES
        return max(0, self.processed - guard)

    def accept(self, samples: npt.NDArray[np.float32]) -> None:
        data = np.concatenate([self._rest, samples]) if self._rest.size else samples
        n_frames = data.size // FRAME_SAMPLES
        if n_frames:
            frames = data[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES)
            energy = np.mean(np.square(frames, dtype=np.float64), axis=1)
            levels = 10.0 * np.log10(energy + 1e-12)
            for level in levels:
                self._frame(float(level))
        self._rest = data[n_frames * FRAME_SAMPLES :].copy()

    def _frame(self, level_db: float) -> None:
        cfg = self.config
        # Noise floor: follows quiet frames down at once, creeps up slowly (0.5 dB/s).
        floor = self._floor_db
        floor = level_db if floor is None or level_db < floor else floor + 0.01
        self._floor_db = floor
        threshold = max(floor + cfg.threshold_db, cfg.absolute_floor_dbfs)
        frame_start = self.processed
        self.processed += FRAME_SAMPLES
        if level_db > threshold:
            self._speech_run += 1
            self._silence_run = 0
            self._last_speech_end = self.processed
            if self._open_start is None and self._speech_run >= cfg.frames(cfg.min_speech_ms):
                self._open_start = frame_start - (self._speech_run - 1) * FRAME_SAMPLES
        else:
            self._speech_run = 0
            self._silence_run += 1
            if self._open_start is not None and self._silence_run >= cfg.frames(cfg.min_silence_ms):
                pad = cfg.samples(cfg.pad_ms)
                self.closed.append(Utterance(self.open_start or 0, self._last_speech_end + pad))
                self._open_start = None

    def take_closed(self) -> list[Utterance]:
        closed, self.closed = self.closed, []
        return closed
