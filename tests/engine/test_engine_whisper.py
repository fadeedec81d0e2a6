"""The Whisper recognizer's decode policy: short encoder inputs, adaptive partial decodes."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.engine.recognizer import Recognizer
from bridge.engine.whisper import (
    WhisperConfig,
    WhisperRecognizer,
    _Utilization,
    decode_interval_for,
    encoder_frames,
)
from tests.engine import speech


def test_encoder_input_is_the_window_plus_a_tail_not_30_s() -> None:
    config = WhisperConfig(model_path="x")
    assert encoder_frames(config, 150) == 800  # 1.5 s: at least 8 s in all
    assert encoder_frames(config, 420) == 900  # 4.2 s + 4 s of tail, whole seconds
    assert encoder_frames(config, 1200) == 1600
    assert encoder_frames(config, 2700) == 3000  # never past Whisper's 30 s
    assert encoder_frames(WhisperConfig(model_path="x", full_encoder=True), 150) == 3000


def test_partial_decodes_thin_out_as_the_workers_get_busy() -> None:
    config = WhisperConfig(model_path="x", decode_interval_ms=1000, min_decode_interval_ms=500)
    assert decode_interval_for(config, 0.0) == 500
    assert decode_interval_for(config, 0.7) == 1000
    assert decode_interval_for(config, 1.0) == 2000


def test_utilization_counts_running_and_recent_decodes() -> None:
    busy = _Utilization(workers=2, window_s=4.0)
    assert busy.value(100.0) == 0.0
    busy.started(100.0)
    busy.finished(102.0)
    assert busy.value(102.0) == pytest.approx(2.0 / 8.0)
    busy.started(103.0)
    assert busy.value(104.0) == pytest.approx(3.0 / 8.0)  # 2 s done + 1 s running
    assert busy.value(110.0) == pytest.approx(4.0 / 8.0)  # only the running one, 4 s of it


def test_short_clip_decodes_once_without_looping(whisper_recognizer: Recognizer) -> None:
    """Without enough padding after the speech Whisper repeats the sentence; not here."""
    assert isinstance(whisper_recognizer, WhisperRecognizer)
    sentence = "I am calling about your invoice from March"
    clip = speech.build([0.2, sentence, 0.2])
    words, language, _ = whisper_recognizer.transcribe(
        clip.audio.astype(np.float32), language="en", prompt=None
    )
    assert language == "en"
    assert speech.normalize("".join(w for w, _, _ in words)).split() == sentence.lower().split()
    duration_s = clip.audio.size / speech.SAMPLE_RATE_HZ
    assert all(0.0 <= start <= end <= duration_s + 0.05 for _, start, end in words)
    assert words[0][1] < 0.5 and words[-1][2] > duration_s - 0.8
