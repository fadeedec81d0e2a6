"""Real words with no GPU: flite speech through G.711 into ``bridge transcribe`` and the engine.

The audio is built in the test, so we know when every word was spoken; each key word must be
stored on the right leg, within ±500 ms of that time (issue: embedded CPU speech engine).
"""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from bridge_cli import bridge
from engine_server import EngineServer

from tests.engine import speech

pytestmark = pytest.mark.integration

LEFT = [1.0, "Please call Alice tomorrow morning", 1.5]
RIGHT = [2.0, "The invoice is in the billing department", 1.0]
LEFT_KEYS = {"please", "alice", "tomorrow", "morning"}
RIGHT_KEYS = {"invoice", "billing", "department"}


def write_ulaw_wav(path: Path, channels: list[speech.Speech]) -> Path:
    """A G.711 µ-law WAV at 8 kHz (format tag 7), made by sox from the 16 kHz speech."""
    n = max(c.audio.size for c in channels)
    pcm = np.stack([np.pad(c.audio, (0, n - c.audio.size)) for c in channels], axis=1)
    linear = path.with_suffix(".16k.wav")
    with wave.open(str(linear), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(speech.SAMPLE_RATE_HZ)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    assert speech.SOX, "sox is missing: run bash .ci/setup.sh"
    subprocess.run([speech.SOX, linear, "-r", "8000", "-e", "mu-law", "-b", "8", path], check=True)
    return path


def spoken_starts(built: speech.Speech) -> dict[str, float]:
    return {speech.normalize(w.text): w.start_ms for w in built.words}


def stored_words(doc: dict, leg_id: str) -> dict[str, int]:
    words: dict[str, int] = {}
    for segment in doc["segments"]:
        if segment["leg_id"] == leg_id and segment["final"]:
            for word in segment["words"]:
                words.setdefault(speech.normalize(word["text"]), word["start_ms"])
    return words


def assert_words_on_time(stored: dict[str, int], spoken: dict[str, float], keys: set[str]) -> None:
    missing = keys - stored.keys()
    assert not missing, f"missing {missing} in {sorted(stored)}"
    for key in keys:
        assert abs(stored[key] - spoken[key]) <= 500, (key, stored[key], spoken[key])


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, speech.Speech, speech.Speech]:
    if speech.FLITE is None:
        pytest.fail("flite is missing: run bash .ci/setup.sh")
    left = speech.build(LEFT, by_word=True)
    right = speech.build(RIGHT, by_word=True)
    path = write_ulaw_wav(tmp_path_factory.mktemp("speech") / "call.wav", [left, right])
    return path, left, right


def test_stereo_mulaw_call_gives_two_legs_with_their_own_words_on_time(
    engine_server: EngineServer, call_wav: tuple[Path, speech.Speech, speech.Speech], tmp_path: Path
) -> None:
    path, left, right = call_wav
    db = tmp_path / "c.db"
    asr = ["--asr-url", engine_server.url, "--model", engine_server.model]
    done = bridge("transcribe", path, "--fast", "--db", db, *asr, "--api-key", "bridge-test-key")
    assert done.returncode == 0, done.stderr
    doc = json.loads(bridge("export", done.stdout.strip(), "--db", db).stdout)
    assert [leg["codec"] for leg in doc["legs"]] == ["pcmu/8000", "pcmu/8000"]
    caller, agent = (leg["id"] for leg in doc["legs"])
    left_words, right_words = stored_words(doc, caller), stored_words(doc, agent)
    assert_words_on_time(left_words, spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(right_words, spoken_starts(right), RIGHT_KEYS)
    # Each leg has its own words only.
    assert not RIGHT_KEYS & left_words.keys() and not LEFT_KEYS & right_words.keys()


def test_without_configuration_transcribe_uses_the_embedded_engine(
    call_wav: tuple[Path, speech.Speech, speech.Speech], tmp_path: Path
) -> None:
    path, left, _ = call_wav
    db = tmp_path / "c.db"
    done = bridge("transcribe", path, "--fast", "--db", db, "--roles", "agent,customer")
    assert done.returncode == 0, done.stderr
    assert "starting the embedded CPU engine" in done.stderr
    doc = json.loads(bridge("export", done.stdout.strip(), "--db", db).stdout)
    assert [leg["role"] for leg in doc["legs"]] == ["agent", "customer"]
    assert_words_on_time(stored_words(doc, doc["legs"][0]["id"]), spoken_starts(left), LEFT_KEYS)
