"""The ``bridge`` command line as a user runs it: subprocesses, the real vLLM server, a real DB."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bridge_cli import bridge
from vllm_server import VllmServer, build_model_dir

from bridge.core.types import CallId, CallInfo, LegSource
from storage import TranscriptStore

pytestmark = pytest.mark.integration


def write_wav(path: Path, channels: list[np.ndarray], rate: int = 16000) -> Path:
    frames = np.stack(channels, axis=1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return path


def tone(seconds: float, freq: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (3000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.fixture
def asr(vllm_server: VllmServer) -> list[str]:
    return ["--asr-url", vllm_server.url, "--model", vllm_server.model, "--api-key", KEY]


KEY = "bridge-test-key"  # the session server's --api-key (conftest.py)


def test_transcribe_stereo_then_list_show_and_export(asr: list[str], tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "call.wav", [tone(3.0, 300), tone(3.0, 500)])
    db = tmp_path / "calls.db"
    done = bridge("transcribe", wav, "--fast", "--db", db, *asr)
    assert done.returncode == 0, done.stderr
    call_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", call_id), done.stdout
    assert "segment(s) stored in" in done.stderr
    assert "[00:00.5 caller] hello world." in done.stderr  # live finals as they come

    listed = bridge("calls", "--db", db)
    assert listed.returncode == 0
    assert call_id[:10] in listed.stdout and "completed" in listed.stdout
    assert "call.wav" in listed.stdout and " 2 " in listed.stdout

    shown = bridge("show", call_id[:8], "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "[00:00.5] caller: hello world." in shown.stdout
    assert "[00:00.5] agent: hello world." in shown.stdout
    assert "[00:02.8] caller: how are you?" in shown.stdout

    exported = bridge("export", call_id, "--format", "json", "--db", db)
    assert exported.returncode == 0, exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["schema"] == "call-bridge.transcript/1"
    assert doc["call"]["id"] == call_id and doc["call"]["end_cause"] == "completed"
    assert [leg["role"] for leg in doc["legs"]] == ["caller", "agent"]
    assert all(leg["duration_ms"] == 3000 for leg in doc["legs"])
    first = doc["segments"][0]
    assert first["text"] == "hello world." and first["final"] is True
    assert first["timing"] == "step-clock"
    assert first["words"][0] == {
        "text": "hello",
        "start_ms": 560,
        "end_ms": 960,
        "timing": "step-clock",
    }
    assert {s["role"] for s in doc["segments"]} == {"caller", "agent"}

    out = tmp_path / "call.txt"
    txt = bridge("export", call_id[:6], "-f", "txt", "-o", out, "--db", db)
    assert txt.returncode == 0 and out.read_text().count("hello world.") == 2


def test_transcribe_at_real_time_pace_shows_progress(asr: list[str], tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "mono.wav", [tone(2.0, 400, rate=8000)], rate=8000)
    done = bridge("transcribe", wav, "--db", tmp_path / "c.db", *asr)
    assert done.returncode == 0, done.stderr
    assert "(real time)" in done.stderr
    assert "100% 00:02.0/00:02.0" in done.stderr
    assert "speaker] hello world." in done.stderr


def test_check_reports_model_and_step_clock(vllm_server: VllmServer, asr: list[str]) -> None:
    ok = bridge("check", *asr)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "serves tiny-voxtral (max_model_len 512 = 38 s of audio per session)" in ok.stdout
    assert "23 deltas for 1.04 s of audio" in ok.stdout
    assert "delay         OK   480 ms, as configured" in ok.stdout
    # 512 tokens hold 38 s; the bridge recycles after up to 120 + 30 s: size the server for it.
    assert ok.stdout.endswith(
        "  session       WARN a session holds 38 s of audio, but the bridge recycles after up to "
        "150 s (asr.recycle_after_s + segments.max_segment_s): serve with --max-model-len 1915 "
        "or more, or lower asr.recycle_after_s\n"
    )
    short = bridge(
        "check", *asr, env={"BRIDGE_ASR_RECYCLE_AFTER_S": "20", "BRIDGE_SEGMENT_MAX_S": "10"}
    )
    assert short.returncode == 0 and "WARN" not in short.stdout, short.stdout
    wrong = bridge("check", "--asr-url", vllm_server.url, "--model", "voxtral", "--api-key", KEY)
    assert wrong.returncode == 1
    assert "'voxtral' is not served; pass --model tiny-voxtral" in wrong.stdout
    nokey = bridge("check", "--asr-url", vllm_server.url, "--model", vllm_server.model)
    assert nokey.returncode == 1
    assert "HTTP 401: wrong or missing API key (--api-key)" in nokey.stdout
    skew = bridge("check", *asr, "--delay-ms", "960")
    assert skew.returncode == 1
    assert (
        "its delay is 480 ms, but the bridge is set to 960 ms; pass --delay-ms 480" in skew.stdout
    )


def test_check_reads_the_model_directory(
    vllm_server: VllmServer, asr: list[str], tmp_path: Path
) -> None:
    """Issue 20: the delay and step clock come from the model's files, and the server's
    measured delay is checked against them."""
    ok = bridge("check", *asr, "--model-dir", vllm_server.model_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(
        f"Model files {vllm_server.model_dir}\n  tekken.json   OK   16000 Hz, 12.5 frames/s, "
        "transcription delay 480 ms, 32 left-pad tokens, look-ahead 2.5 ms (read with "
        "mistral-common "
    )
    assert "delay         OK   480 ms, as the model directory" in ok.stdout
    other = build_model_dir(tmp_path / "voxtral-960", delay_ms=960)
    skew = bridge("check", *asr, "--model-dir", other)
    assert skew.returncode == 1
    assert (
        "its delay is 480 ms, but the model directory says 960 ms; the server runs other model "
        "files: pass the --model-dir it serves" in skew.stdout
    )
    both = bridge("check", *asr, "--model-dir", other, env={"BRIDGE_ASR_DELAY_MS": "480"})
    assert both.returncode == 2
    assert both.stderr == (
        f"bridge: error: asr.delay_ms is 480 but the model in {other} has transcription_delay_ms "
        "960: drop delay_ms (the model's is used), or point model_dir at the model the server "
        "runs\n"
    )


@pytest.fixture
def plain_http_server(tmp_path: Path) -> Iterator[str]:
    """Some other HTTP server (not vLLM) on a free port."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def create_db(path: Path) -> None:
    store = await TranscriptStore.open(path)
    await store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bad_input_gets_one_clear_line_and_an_exit_code(
    vllm_server: VllmServer, tmp_path: Path, plain_http_server: str
) -> None:
    not_vllm = plain_http_server.replace("http://", "ws://") + "/v1/realtime"
    wav = write_wav(tmp_path / "a.wav", [tone(1.0, 300)])
    db = tmp_path / "c.db"
    down = f"ws://127.0.0.1:{free_port()}/v1/realtime"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"ID3\x04" + bytes(500))  # an MP3 renamed .wav
    unknown = tmp_path / "call.xyz"
    unknown.write_bytes(bytes(range(256)) * 8)
    empty_db = tmp_path / "empty.db"
    asyncio.run(create_db(empty_db))
    cases = [
        (
            ["transcribe", wav, "--db", db, "--asr-url", down],
            1,
            "cannot reach the ASR server at http://127.0.0.1:",
        ),
        (
            ["transcribe", wav, "--db", db, "--asr-url", vllm_server.url, "--model", "x"]
            + ["--api-key", KEY],
            2,
            "does not serve model 'x'; it serves tiny-voxtral: pass --model tiny-voxtral",
        ),
        (
            ["transcribe", wav, "--db", db, "--asr-url", vllm_server.url],
            2,
            "wrong or missing API key (HTTP 401); pass --api-key or set BRIDGE_ASR_API_KEY",
        ),
        (
            ["transcribe", wav, "--db", db, "--asr-url", not_vllm],
            1,
            "/v1/models answered HTTP 404: is this a vLLM server? Run `bridge check`",
        ),
        (
            ["transcribe", corrupt, "--db", db, "--asr-url", vllm_server.url],
            1,
            "corrupt.wav: cannot read it (it starts like an MP3 file (ID3 tag), but FFmpeg:",
        ),
        (
            ["transcribe", unknown, "--db", db, "--asr-url", vllm_server.url],
            1,
            "call.xyz: not an audio file FFmpeg can read (FFmpeg found no known format in it)",
        ),
        (["transcribe", tmp_path / "missing.wav", "--db", db], 1, "missing.wav: no such file"),
        (["transcribe", wav, "--db", db, "--delay-ms", "500"], 2, "must be a multiple of 80"),
        (["transcribe", wav, "--db", db, "--asr-url", "http://x"], 2, "expected ws://"),
        (["show", "nope", "--db", empty_db], 2, "no call 'nope'"),
        (["calls", "--db", tmp_path / "none.db"], 1, "no transcript database yet"),
    ]
    for args, code, message in cases:
        result = bridge(*args)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bridge: error: "), result.stderr
        assert message in lines[0], lines[0]
        assert "Traceback" not in result.stderr


def test_environment_and_config_file_settings(vllm_server: VllmServer, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(f'[asr]\nurl = "{vllm_server.url}"\nmodel = "wrong"\n')
    # The environment overrides the file; the command line overrides both.
    env = {"BRIDGE_ASR_MODEL": vllm_server.model, "BRIDGE_ASR_API_KEY": KEY}
    assert bridge("-c", config, "check", env=env).returncode == 0
    assert bridge("-c", config, "check", "--model", "wrong", env=env).returncode == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('[asr]\ndelay_ms = 500\nurll = "x"\n[storage]\ndb = 3\n')
    result = bridge("-c", bad, "check")
    assert result.returncode == 2
    assert result.stderr.count("bridge: error:") == 3  # all problems at once
    assert "unknown setting asr.urll (known: " in result.stderr


def test_model_prepare_rewrites_the_delay(vllm_server: VllmServer, tmp_path: Path) -> None:
    out = tmp_path / "voxtral-960"
    done = bridge(
        "model", "prepare", "--delay-ms", "960", "--out", out, "--from", vllm_server.model_dir
    )
    assert done.returncode == 0, done.stderr
    tekken = json.loads((out / "tekken.json").read_text())
    assert tekken["audio"]["transcription_delay_ms"] == 960
    assert (out / "params.json").resolve() == (vllm_server.model_dir / "params.json").resolve()
    assert "--delay-ms 960" in done.stdout
    assert "mistral-common reads it back: 16000 Hz, 12.5 frames/s, transcription delay 960 ms" in (
        done.stdout
    )
    bad = bridge(
        "model", "prepare", "--delay-ms", "100", "--out", out, "--from", vllm_server.model_dir
    )
    assert bad.returncode == 2 and "multiples of 80 from 80 to 1200, or 2400" in bad.stderr
    missing = bridge(
        "model",
        "prepare",
        "--delay-ms",
        "480",
        "--out",
        tmp_path / "o",
        env={"HOME": str(tmp_path)},
    )
    assert missing.returncode == 2 and "no local snapshot of mistralai/" in missing.stderr


def test_ctrl_c_finishes_the_legs_and_keeps_the_transcript(asr: list[str], tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "long.wav", [tone(8.0, 300)])
    db = tmp_path / "c.db"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "transcribe", str(wav), "--db", str(db), *asr],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    try:
        time.sleep(3.5)  # real-time pace: "hello world." is final after ~1.7 s of audio
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopping; finishing the legs" in err
    call_id = out.strip()
    doc = json.loads(bridge("export", call_id, "--db", db).stdout)
    assert doc["call"]["end_cause"] == "interrupted"
    assert doc["segments"][0]["text"] == "hello world." and doc["segments"][0]["final"]
    assert doc["legs"][0]["duration_ms"] < 8000


def test_serve_starts_closes_dangling_calls_and_stops_on_sigterm(
    asr: list[str], tmp_path: Path
) -> None:
    db = tmp_path / "c.db"

    async def dangling() -> None:
        store = await TranscriptStore.open(db)
        await store.add_call(CallInfo(CallId("d" * 32), LegSource.SIP, 1000, title="crashed"))
        await store.close()

    asyncio.run(dangling())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    port = free_port()
    environ.update(BRIDGE_PORT=str(port), BRIDGE_API_TOKENS="test-supervisor-token:supervisor")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--no-sip", "--db", str(db), *asr],
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "dashboards and API at" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    text = "".join(lines) + err
    assert proc.returncode == 0, text
    assert "1 call(s) left active by a previous run marked ended" in text
    assert "/v1/realtime  OK" in text and "bridge: stopped" in text
    listed = bridge("calls", "--db", db)
    assert "bridge-restarted" in listed.stdout
