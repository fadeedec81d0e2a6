"""The engine speaking the OpenAI transcription dialect (``?intent=transcription``) over real
sockets, driven by the bridge's own client object (bridge/core/openai_protocol.py); every frame
each side sends is validated against the ``openai`` package's typed realtime events."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection, connect

from bridge.core.asr_protocol import Closed, SessionStarted
from bridge.core.openai_protocol import (
    OpenAiState,
    OpenAiTranscription,
    TurnCompleted,
    TurnSegment,
)
from bridge.engine import EngineConfig, RunningEngine, start_engine_server
from bridge.engine.recognizer import ScriptedRecognizer, TimedWord

CLIENT: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SERVER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
WORDS = [TimedWord(" hello", 4000, 8000), TimedWord(" world.", 8000, 12000)]
SECOND = 16_000


@pytest.fixture
async def engine() -> AsyncIterator[RunningEngine]:
    running = await start_engine_server(
        EngineConfig(max_legs=1), recognizer=ScriptedRecognizer(WORDS)
    )
    try:
        yield running
    finally:
        await running.close()


async def pump(ws: ClientConnection, stream: OpenAiTranscription) -> None:
    for frame in stream.data_to_send():
        CLIENT.validate_json(frame)
        await ws.send(frame)


async def receive(ws: ClientConnection, stream: OpenAiTranscription) -> dict[str, Any]:
    text = str(await asyncio.wait_for(ws.recv(), 10))
    SERVER.validate_json(text)  # a valid OpenAI server event, whatever it is
    stream.receive_message(text)
    await pump(ws, stream)
    event: dict[str, Any] = json.loads(text)
    return event


async def test_turns_come_back_as_items_with_their_text(engine: RunningEngine) -> None:
    stream = OpenAiTranscription(engine.model, language="en")
    async with connect(engine.url + "?intent=transcription") as ws:
        stream.receive_connected()
        assert (await receive(ws, stream))["type"] == "session.created"
        updated = await receive(ws, stream)
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        assert updated["session"]["audio"]["input"]["transcription"]["language"] == "en"
        for seconds in (1.0, 0.5):
            stream.send_audio(bytes(int(2 * seconds * SECOND)))
            assert stream.end_turn()
            await pump(ws, stream)
        stream.end_stream()  # nothing after the last pause: no third turn
        await pump(ws, stream)
        kinds = []
        while stream.state is not OpenAiState.CLOSED:
            kinds.append((await receive(ws, stream))["type"])
    events = stream.events_received()
    assert events[0] == SessionStarted(updated["session"]["id"])
    done = [e for e in events if isinstance(e, TurnCompleted)]
    assert [(e.text, e.start, e.end) for e in done] == [
        ("hello world.", 0, SECOND),
        ("hello world.", SECOND, SECOND * 3 // 2),
    ]
    assert events[-1] == Closed("leg ended")
    assert kinds.count("input_audio_buffer.committed") == 2
    assert kinds.count("conversation.item.input_audio_transcription.delta") == 4
    # Each word's span in its turn, from the recognizer's word times.
    segments = [e for e in events if isinstance(e, TurnSegment)]
    assert [(e.text, e.start, e.end) for e in segments[:2]] == [
        ("hello", 4000, 8000),
        ("world.", 8000, 12000),
    ]


@pytest.mark.parametrize("wire", ["audio/pcmu", "audio/pcma"])
async def test_g711_turns_are_decoded_to_the_recognizers_rate(
    engine: RunningEngine, wire: str
) -> None:
    stream = OpenAiTranscription(engine.model, wire_format=wire)
    async with connect(engine.url + "?intent=transcription") as ws:
        stream.receive_connected()
        await receive(ws, stream)
        updated = await receive(ws, stream)
        assert updated["session"]["audio"]["input"]["format"] == {"type": wire}
        stream.send_audio(bytes(2 * SECOND))
        stream.end_stream()
        await pump(ws, stream)
        while stream.state is not OpenAiState.CLOSED:
            await receive(ws, stream)
    [done] = [e for e in stream.events_received() if isinstance(e, TurnCompleted)]
    assert (done.text, done.start, done.end) == ("hello world.", 0, SECOND)


async def test_what_the_engine_refuses_it_says_and_keeps_the_socket(engine: RunningEngine) -> None:
    async with connect(engine.url + "?intent=transcription") as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"

        async def answer(event: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(event))
            text = str(await asyncio.wait_for(ws.recv(), 5))
            SERVER.validate_json(text)
            reply: dict[str, Any] = json.loads(text)
            return reply

        append = {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(bytes(480)).decode(),
        }
        early = await answer(append)
        assert early["error"]["code"] == "session_not_configured"
        pcm16k = {"type": "audio/pcm", "rate": 16000}  # 24 kHz is the only PCM rate
        wrong = {"type": "transcription", "audio": {"input": {"format": pcm16k}}}
        refused = await answer({"type": "session.update", "session": wrong})
        assert refused["error"]["code"] == "unsupported_format"
        vad = {
            "type": "transcription",
            "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
        }
        assert (await answer({"type": "session.update", "session": vad}))["error"]["code"] == (
            "unsupported_turn_detection"
        )
        ok = await answer({"type": "session.update", "session": {"type": "transcription"}})
        assert ok["type"] == "session.updated"
        await ws.send(json.dumps(append))  # 10 ms
        short = await answer({"type": "input_audio_buffer.commit"})
        assert short["error"]["code"] == "input_audio_buffer_commit_empty"
        assert (await answer({"type": "input_audio_buffer.clear"}))["type"] == (
            "input_audio_buffer.cleared"
        )
        bad = await answer({"type": "input_audio_buffer.append", "audio": "%%%"})
        assert bad["error"]["code"] == "invalid_audio"
        assert (await answer({"type": "response.create"}))["error"]["code"] == "unknown_event"
        vllm_style = await answer({"type": "session.update", "model": engine.model})
        assert vllm_style["error"]["code"] == "invalid_session"  # the other dialect's update


async def test_a_second_session_beyond_the_legs_is_refused(engine: RunningEngine) -> None:
    async with connect(engine.url + "?intent=transcription") as first:
        assert json.loads(await first.recv())["type"] == "session.created"
        async with connect(engine.url + "?intent=transcription") as second:
            refused = json.loads(await second.recv())
            SERVER.validate_json(json.dumps(refused))
            assert refused["error"]["code"] == "capacity_exceeded"
            await second.wait_closed()
            assert second.close_code == 1013
