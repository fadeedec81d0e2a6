"""Real speech through the OpenAI transcription dialect: the bridge's client object
(bridge/core/openai_protocol.py) against the embedded engine's ``?intent=transcription``
sessions (``bridge asr-server``, faster-whisper base), two flite turns, every frame of both sides
validated against the ``openai`` package's typed realtime events."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from engine_server import EngineServer
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import connect

from bridge.core.openai_protocol import OpenAiState, OpenAiTranscription, TurnCompleted, TurnDelta
from tests.engine.speech import build, normalize

pytestmark = pytest.mark.integration

CLIENT: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SERVER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
CHUNK = 2560  # 80 ms of 16 kHz PCM16


async def test_two_spoken_turns_come_back_as_their_words(engine_server: EngineServer) -> None:
    turns = [build(["please call me back tomorrow morning"]), build(["the order number is ready"])]
    headers = {"Authorization": f"Bearer {engine_server.api_key}"}
    stream = OpenAiTranscription(engine_server.model, language="en")
    async with connect(
        engine_server.url + "?intent=transcription", additional_headers=headers
    ) as ws:

        async def pump() -> None:
            for frame in stream.data_to_send():
                CLIENT.validate_json(frame)
                await ws.send(frame)

        async def receive() -> None:
            text = str(await asyncio.wait_for(ws.recv(), 60))
            SERVER.validate_json(text)
            stream.receive_message(text)
            await pump()

        stream.receive_connected()
        await receive()  # session.created
        await receive()  # session.updated
        for turn in turns:
            pcm = (np.clip(turn.audio, -1, 1) * 32767).astype("<i2").tobytes()
            for i in range(0, len(pcm), CHUNK):
                stream.send_audio(pcm[i : i + CHUNK])
            stream.send_audio(bytes(CHUNK * 4))  # a pause after each
            assert stream.end_turn()
            await pump()
        stream.end_stream()
        await pump()
        while stream.state is not OpenAiState.CLOSED:
            await receive()
    events = stream.events_received()
    done = [e for e in events if isinstance(e, TurnCompleted)]
    assert [" ".join(normalize(e.text).split()) for e in done] == [
        "please call me back tomorrow morning",
        "the order number is ready",
    ], [e.text for e in done]
    # The deltas of each turn add up to its final text.
    for turn in done:
        deltas = [e.delta for e in events if isinstance(e, TurnDelta) and e.turn == turn.turn]
        assert "".join(deltas).strip() == turn.text
    assert done[0].end == done[1].start  # the turns tile the leg clock
