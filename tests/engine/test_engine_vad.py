"""Energy VAD: utterances from tone bursts, silence, and telephone-like noise."""

from __future__ import annotations

import numpy as np

from bridge.engine.vad import EnergyVad, Utterance, VadConfig

RATE = 16000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (noise * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def feed(vad: EnergyVad, audio: np.ndarray) -> None:
    for i in range(0, audio.size, 1280):  # 80 ms at a time, like the server
        vad.accept(audio[i : i + 1280])


def test_two_bursts_make_two_padded_utterances() -> None:
    vad = EnergyVad(VadConfig(pad_ms=200, min_silence_ms=500))
    feed(vad, np.concatenate([silence(1), tone(1), silence(1), tone(0.5), silence(1)]))
    closed = vad.take_closed()
    assert closed == [Utterance(12800, 35200), Utterance(44800, 59200)]
    assert not vad.in_speech and vad.take_closed() == []


def test_a_short_pause_does_not_split_and_open_speech_is_reported() -> None:
    vad = EnergyVad()
    feed(vad, np.concatenate([silence(0.5), tone(1), silence(0.3), tone(1)]))
    assert vad.closed == [] and vad.in_speech
    assert vad.open_start == 8000 - 3200
    assert vad.quiet_until < vad.processed


def test_steady_line_noise_is_not_speech() -> None:
    vad = EnergyVad()
    feed(vad, np.concatenate([silence(2, noise=0.003), tone(0.6, 0.1), silence(1, noise=0.003)]))
    assert len(vad.take_closed()) == 1
