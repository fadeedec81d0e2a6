"""Recordings as people have them (issue 13 item 6), end to end: an MP3 through ``bridge
transcribe --fast`` and an Opus file uploaded to a real ``bridge serve``, both against the
embedded engine (real recognition), so the words prove the decoded audio is the speech."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from bridge_cli import bridge
from engine_server import EngineServer
from test_embedded_engine import (
    LEFT,
    LEFT_KEYS,
    RIGHT,
    RIGHT_KEYS,
    assert_words_on_time,
    spoken_starts,
    stored_words,
)

from tests.engine import speech
from tests.files.encoded import encode

pytestmark = pytest.mark.integration

KEY = "bridge-test-key"  # the session servers' --api-key (conftest.py)
TOKEN = "audio-formats-supervisor"


def pcm16(*built: speech.Speech) -> list[np.ndarray]:
    n = max(b.audio.size for b in built)
    return [(np.pad(b.audio, (0, n - b.audio.size)) * 32767).astype(np.int16) for b in built]


@pytest.fixture(scope="module")
def spoken() -> tuple[speech.Speech, speech.Speech]:
    return speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)


def test_transcribe_fast_reads_a_stereo_mp3(
    engine_server: EngineServer, spoken: tuple[speech.Speech, speech.Speech], tmp_path: Path
) -> None:
    left, right = spoken
    mp3 = encode(
        tmp_path / "call.mp3", pcm16(left, right), container="mp3", codec="libmp3lame", rate=44100
    )
    db = tmp_path / "c.db"
    asr = ["--asr-url", engine_server.url, "--model", engine_server.model, "--api-key", KEY]
    done = bridge("transcribe", mp3, "--fast", "--db", db, *asr, timeout_s=300)
    assert done.returncode == 0, done.stderr
    assert "call.mp3: 00:0" in done.stderr and "2 channel(s)" in done.stderr
    doc = json.loads(bridge("export", done.stdout.strip(), "--db", db).stdout)
    assert doc["call"]["end_cause"] == "completed"
    assert [leg["codec"] for leg in doc["legs"]] == ["pcm16/44100"] * 2
    caller, agent = (leg["id"] for leg in doc["legs"])
    left_words, right_words = stored_words(doc, caller), stored_words(doc, agent)
    assert_words_on_time(left_words, spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(right_words, spoken_starts(right), RIGHT_KEYS)
    assert not RIGHT_KEYS & left_words.keys() and not LEFT_KEYS & right_words.keys()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, *, data: bytes | None = None, content_type: str = "") -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_an_opus_upload_to_bridge_serve_is_transcribed(
    engine_server: EngineServer, spoken: tuple[speech.Speech, speech.Speech], tmp_path: Path
) -> None:
    left, _ = spoken
    opus = encode(
        tmp_path / "meeting.ogg", pcm16(left), container="ogg", codec="libopus", rate=48000
    )
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    environ.update(
        BRIDGE_PORT=str(port), BRIDGE_API_TOKENS=f"{TOKEN}:supervisor", BRIDGE_SIP_ENABLED="0"
    )
    asr = ["--asr-url", engine_server.url, "--model", engine_server.model, "--api-key", KEY]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--db", str(tmp_path / "c.db"), *asr],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        accepted = _request(
            f"{base}/api/v1/calls?pace=fast&title=meeting.ogg",
            data=opus.read_bytes(),
            content_type="audio/ogg",
        )
        assert accepted["status"] == "running", accepted
        deadline = time.monotonic() + 180
        while (doc := _request(f"{base}/api/v1/calls/{accepted['id']}"))["call"]["active"]:
            assert time.monotonic() < deadline, doc
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert (doc["call"]["title"], doc["call"]["end_cause"]) == ("meeting.ogg", "completed")
    assert [leg["codec"] for leg in doc["legs"]] == ["pcm16/48000"]
    assert_words_on_time(stored_words(doc, doc["legs"][0]["id"]), spoken_starts(left), LEFT_KEYS)
