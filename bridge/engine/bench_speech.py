"""The benchmark's speech: flite sentences (clean and through G.711 µ-law) and word error rate.

Needs Debian ``flite`` and ``sox``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.core.step_clock import SAMPLE_RATE_HZ
from bridge.engine.recognizer import Recognizer

__all__ = [
    "SENTENCES",
    "Material",
    "make_material",
    "mulaw",
    "normalize",
    "pcm16",
    "time_words",
    "word_error_rate",
]


def flite(text: str, voice: str) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True)
        with wave.open(str(out)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    loud = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[loud[0] : loud[-1] + 1]


def mulaw(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory() as tmp:
        src, law, back = (Path(tmp) / n for n in ("in.wav", "law.wav", "back.wav"))
        with wave.open(str(src), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE_HZ)
            wav.writeframes(pcm16(audio))
        subprocess.run(
            ["sox", str(src), "-r", "8000", "-e", "mu-law", "-b", "8", str(law)], check=True
        )
        subprocess.run(
            ["sox", str(law), "-r", "16000", "-e", "signed", "-b", "16", str(back)], check=True
        )
        with wave.open(str(back)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    out = pcm.astype(np.float32) / 32768.0
    return np.pad(out, (0, max(0, audio.size - out.size)))[: audio.size]


def pcm16(audio: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


SENTENCES = [
    "Hello, this is Alice from the billing department.",
    "I am calling about your invoice from March.",
    "The payment was received last week, but the amount was wrong.",
    "Could you please confirm your account details?",
    "We can send a new copy to your email address today.",
    "Thank you for your patience, and have a nice afternoon.",
    "The technician will arrive tomorrow morning before lunch.",
    "Please let us know if anything else is missing from the order.",
]


@dataclass
class Material:
    audio: npt.NDArray[np.float32]
    reference: str
    word_ends_ms: list[tuple[str, float]]  # the last word of each sentence and its end
    sentences: list[tuple[int, npt.NDArray[np.float32]]] = field(default_factory=list)
    # Every word and its end, from the recognizer's offline alignment (``time_words``).
    all_word_ends_ms: list[tuple[str, float]] = field(default_factory=list)


def make_material(voice: str = "slt", gap_s: float = 0.8, duty: float = 1.0) -> Material:
    """The sentences with ``gap_s`` between them, or (``duty`` < 1) speech that fraction of time."""
    parts = [np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)]
    at = SAMPLE_RATE_HZ
    ends: list[tuple[str, float]] = []
    sentences = []
    for sentence in SENTENCES:
        audio = flite(sentence, voice)
        sentences.append((at, audio))
        parts.append(audio)
        at += audio.size
        ends.append((normalize(sentence).split()[-1], at * 1000 / SAMPLE_RATE_HZ))
        silence_s = gap_s if duty >= 1.0 else audio.size / SAMPLE_RATE_HZ * (1 / duty - 1)
        gap = np.zeros(int(silence_s * SAMPLE_RATE_HZ), dtype=np.float32)
        parts.append(gap)
        at += gap.size
    return Material(np.concatenate(parts), " ".join(SENTENCES), ends, sentences)


def time_words(material: Material, recognizer: Recognizer) -> None:
    """Fill ``all_word_ends_ms``: each sentence decoded on its own, words aligned by Whisper."""
    transcribe = getattr(recognizer, "transcribe", None)
    if transcribe is None:
        return
    pad = np.zeros(SAMPLE_RATE_HZ // 5, dtype=np.float32)
    for at, audio in material.sentences:
        words, _, _ = transcribe(np.concatenate([pad, audio, pad]), language="en", prompt=None)
        for text, _start_s, end_s in words:
            for part in normalize(text).split():
                end_ms = (at - pad.size) * 1000 / SAMPLE_RATE_HZ + end_s * 1000
                material.all_word_ends_ms.append((part, end_ms))


_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d", lambda m: f" {_NUMBERS[m.group()]} ", text)
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words / reference words (lower-cased, no punctuation)."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))
