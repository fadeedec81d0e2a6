"""Test speech: flite sentences with known word times, optional G.711 µ-law round trip.

Every word (or phrase) is synthesized on its own with Debian's ``flite`` (16 kHz), trimmed to its
audible part and joined with known silences, so the test knows the span of each word in the
stream.  ``mulaw`` sends the result through ``sox`` to 8 kHz µ-law and back to 16 kHz, as a
phone leg would (speech.md §1).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

SAMPLE_RATE_HZ = 16_000
FLITE = shutil.which("flite")
SOX = shutil.which("sox")


@dataclass(frozen=True, slots=True)
class Spoken:
    text: str
    start_ms: float
    end_ms: float


@dataclass
class Speech:
    audio: npt.NDArray[np.float32]
    words: list[Spoken] = field(default_factory=list)

    @property
    def pcm16(self) -> bytes:
        return (np.clip(self.audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()

    def span(self, word: str) -> Spoken:
        return next(w for w in self.words if normalize(w.text) == normalize(word))


def normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()


def _read_wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == SAMPLE_RATE_HZ and wav.getnchannels() == 1
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def _write_wav(path: Path, audio: npt.NDArray[np.float32], rate: int = SAMPLE_RATE_HZ) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def flite(text: str, voice: str = "slt") -> npt.NDArray[np.float32]:
    """``text`` spoken by flite, trimmed to where it is audible."""
    assert FLITE, "flite is not installed (apt-get install flite)"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run([FLITE, "-voice", voice, "-t", text, "-o", str(out)], check=True)
        audio = _read_wav(out)
    loud = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[loud[0] : loud[-1] + 1]


ESPEAK = shutil.which("espeak-ng")


def espeak(text: str, language: str) -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng in ``language`` (es, fr, de, ...), at 16 kHz, trimmed."""
    assert ESPEAK, "espeak-ng is not installed (apt-get install espeak-ng)"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "say.wav"
        subprocess.run([ESPEAK, "-v", language, "-s", "150", "-w", str(raw), text], check=True)
        with wave.open(str(raw)) as wav:
            rate = wav.getframerate()
            audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2") / 32768.0
    audio = soxr.resample(audio.astype(np.float32), rate, SAMPLE_RATE_HZ)
    loud = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[loud[0] : loud[-1] + 1].astype(np.float32)


def build(parts: list[str | float], *, voice: str = "slt", by_word: bool = False) -> Speech:
    """Join spoken ``str`` parts and silences (``float`` seconds) into one stream.

    ``by_word``: synthesize each word of a part separately (120 ms apart) so every word's span
    is known; otherwise the span of each word is its whole part.
    """
    chunks: list[npt.NDArray[np.float32]] = []
    speech = Speech(np.zeros(0, dtype=np.float32))
    at = 0
    for part in parts:
        if isinstance(part, float | int):
            n = int(part * SAMPLE_RATE_HZ)
            chunks.append(np.zeros(n, dtype=np.float32))
            at += n
            continue
        pieces = part.split() if by_word else [part]
        for i, piece in enumerate(pieces):
            if i:
                gap = np.zeros(int(0.12 * SAMPLE_RATE_HZ), dtype=np.float32)
                chunks.append(gap)
                at += gap.size
            audio = flite(piece, voice)
            chunks.append(audio)
            for word in piece.split():
                speech.words.append(
                    Spoken(
                        word, at * 1000 / SAMPLE_RATE_HZ, (at + audio.size) * 1000 / SAMPLE_RATE_HZ
                    )
                )
            at += audio.size
    speech.audio = np.concatenate(chunks).astype(np.float32)
    return speech


def mulaw(speech: Speech) -> Speech:
    """``speech`` after 8 kHz G.711 µ-law and back to 16 kHz (sox)."""
    assert SOX, "sox is not installed (apt-get install sox)"
    with tempfile.TemporaryDirectory() as tmp:
        src, law, back = Path(tmp) / "in.wav", Path(tmp) / "law.wav", Path(tmp) / "back.wav"
        _write_wav(src, speech.audio)
        subprocess.run(
            [SOX, str(src), "-r", "8000", "-e", "mu-law", "-b", "8", str(law)], check=True
        )
        subprocess.run(
            [SOX, str(law), "-r", "16000", "-e", "signed", "-b", "16", str(back)], check=True
        )
        audio = _read_wav(back)
    n = speech.audio.size
    audio = np.pad(audio, (0, max(0, n - audio.size)))[:n]
    return Speech(audio, list(speech.words))


def append_frames(pcm16: bytes, chunk_bytes: int = 2560) -> list[str]:
    """``input_audio_buffer.append`` frames of 80 ms each."""
    return [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm16[i : i + chunk_bytes]).decode(),
            }
        )
        for i in range(0, len(pcm16), chunk_bytes)
    ]
