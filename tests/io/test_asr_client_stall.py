"""The ASR client against an in-process server that takes audio and never answers: it gives up
after ``max_stalled_connections`` stalls instead of reconnecting forever (issue 13 §1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bridge.core.asr_protocol import AsrState, AsrStream, StepText
from bridge.io.asr_client import AsrClient, AsrEndpoint


class MuteServer:
    """Says ``session.created``, reads everything, answers nothing (a stuck recognizer)."""

    def __init__(self) -> None:
        self.connections = 0
        self.appends = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(json.dumps({"type": "session.created", "id": "sess-mute", "created": 0}))
        async for message in ws:
            if json.loads(message).get("type") == "input_audio_buffer.append":
                self.appends += 1


@pytest.fixture
async def mute() -> AsyncIterator[tuple[MuteServer, str]]:
    server = MuteServer()
    async with serve(server.handle, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield server, f"ws://127.0.0.1:{port}/v1/realtime"


async def test_a_server_that_never_steps_is_given_up_after_three_stalls(
    mute: tuple[MuteServer, str],
) -> None:
    server, url = mute
    endpoint = AsrEndpoint(url=url, model="m", stall_timeout_s=0.3, max_stalled_connections=3)
    stream = AsrStream("m")
    events = []
    client = AsrClient(stream, endpoint, events.append, delays=iter([0.01] * 100))
    stream.send_audio(bytes(2560 * 20))  # 1.6 s of silence: a step is owed
    async with asyncio.timeout(10):  # reconnecting forever would time out here
        await client.run()
    assert server.connections == 3
    assert stream.state is AsrState.CLOSED
    assert client.failure is not None
    assert "no text step on 3 connections in a row" in client.failure
    assert "bridge check" in client.failure
    assert not any(isinstance(e, StepText) for e in events)
