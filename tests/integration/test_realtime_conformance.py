"""Conformance: the real vLLM server and the embedded engine speak ``/v1/realtime`` alike.

Raw ``websockets`` clients only (no bridge code): these tests pin the server behaviour the
bridge is built against (docs/vllm-realtime.md §1-2, vllm-cpu.md §4), and every one of them
runs against both servers (``realtime_server``).  Only the text differs: the vLLM server says
its script, the engine what it hears.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import numpy as np
import pytest
from engine_server import EngineServer
from vllm_server import (
    PROMPT_TOKENS,
    SAMPLE_RATE,
    SAMPLES_PER_STEP,
    SCRIPT,
    VllmServer,
    auth_headers,
    expected_step_count,
    expected_text,
)
from websockets.asyncio.client import ClientConnection, connect

Server = VllmServer | EngineServer

pytestmark = pytest.mark.integration

RECV_TIMEOUT_S = 30.0


def pcm16_tone(n_samples: int, freq: float = 440.0) -> bytes:
    """``n_samples`` of a 16 kHz mono PCM16 sine tone with a little noise."""
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.uniform(-1, 1, n_samples)
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def append_event(pcm: bytes) -> str:
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")}
    )


async def recv_event(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        raw = await ws.recv()
    assert isinstance(raw, str), f"binary frame from server: {raw!r}"
    event: dict[str, Any] = json.loads(raw)
    return event


async def open_session(server: Server) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(server.url, max_size=16 * 2**20, additional_headers=auth_headers(server))
    created = await recv_event(ws)
    return ws, created


async def transcribe(ws: ClientConnection, n_samples: int) -> tuple[list[str], dict[str, Any]]:
    """commit -> all audio at once in 80 ms appends -> commit(final) -> deltas until done."""
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    pcm = pcm16_tone(n_samples)
    step = 2 * SAMPLES_PER_STEP
    for i in range(0, len(pcm), step):
        await ws.send(append_event(pcm[i : i + step]))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
    deltas: list[str] = []
    while True:
        event = await recv_event(ws)
        if event["type"] == "transcription.delta":
            assert set(event) == {"type", "delta"}, event
            deltas.append(event["delta"])
        elif event["type"] == "transcription.done":
            return deltas, event
        else:
            pytest.fail(f"unexpected event during transcription: {event}")


async def test_session_created_shape(realtime_server: Server) -> None:
    ws, created = await open_session(realtime_server)
    await ws.close()
    assert set(created) == {"type", "id", "created"}, created
    assert created["type"] == "session.created"
    assert isinstance(created["id"], str) and created["id"].startswith("sess-"), created
    assert isinstance(created["created"], int)
    assert abs(created["created"] - time.time()) < 60


@pytest.mark.parametrize("n_samples", [16000, 21937, 40000], ids=["1s", "1.37s", "2.5s"])
async def test_transcription_follows_script(realtime_server: Server, n_samples: int) -> None:
    ws, _created = await open_session(realtime_server)
    try:
        await ws.send(json.dumps({"type": "session.update", "model": realtime_server.model}))
        deltas, done = await transcribe(ws, n_samples)
    finally:
        await ws.close()

    steps = expected_step_count(n_samples)
    assert steps == (12760 + n_samples) // 1280 + 1
    assert len(deltas) == steps
    assert done["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": steps,
        "total_tokens": PROMPT_TOKENS + steps,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    assert set(done) == {"type", "text", "usage"}
    assert done["text"] == "".join(deltas)
    if realtime_server.script is None:
        return  # the engine transcribes what it hears: a tone
    assert done["text"] == expected_text(steps, SCRIPT)
    assert done["text"].startswith(" hello world.")
    # One step per script character (ASCII script): each delta is that character or "".
    assert deltas == [
        "" if ch == "|" else ch for ch in (SCRIPT * (steps // len(SCRIPT) + 1))[:steps]
    ]


async def test_second_utterance_on_same_socket(realtime_server: Server) -> None:
    ws, _created = await open_session(realtime_server)
    try:
        await ws.send(json.dumps({"type": "session.update", "model": realtime_server.model}))
        first, done1 = await transcribe(ws, 16000)
        second, done2 = await transcribe(ws, 16000)
    finally:
        await ws.close()
    assert len(first) == len(second) == expected_step_count(16000)
    assert done2["usage"]["prompt_tokens"] == PROMPT_TOKENS
    if realtime_server.script is not None:
        # Each utterance is a fresh request: the script restarts from step 0.
        assert done1["text"] == done2["text"] == expected_text(expected_step_count(16000))


async def test_unknown_model_is_rejected(realtime_server: Server) -> None:
    ws, _created = await open_session(realtime_server)
    try:
        await ws.send(json.dumps({"type": "session.update", "model": "nope/nope"}))
        event = await recv_event(ws)
    finally:
        await ws.close()
    assert event == {
        "type": "error",
        "error": "The model `nope/nope` does not exist.",
        "code": "model_not_found",
    }


async def test_commit_before_session_update(realtime_server: Server) -> None:
    ws, _created = await open_session(realtime_server)
    try:
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        event = await recv_event(ws)
    finally:
        await ws.close()
    assert event == {
        "type": "error",
        "error": (
            "Model not validated. Make sure to validate the model by sending a "
            "session.update event."
        ),
        "code": "model_not_validated",
    }
