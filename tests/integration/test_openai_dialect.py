"""Real speech through the OpenAI transcription dialect: the bridge's client object
(bridge/core/openai_protocol.py) against the embedded engine's ``?intent=transcription``
sessions (``bridge asr-server``, faster-whisper base), two flite turns, every frame of both sides
validated against the ``openai`` package's typed realtime events."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from engine_server import EngineServer
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import connect

from bridge.asr.endpoint import AsrEndpoint
from bridge.asr.probe import check_server
from bridge.core.openai_protocol import OpenAiState, OpenAiTranscription, TurnCompleted, TurnDelta
from bridge.core.types import AudioEncoding, Timing
from bridge.leg import LegSettings
from tests.engine.speech import build, normalize
from tests.integration.test_pipeline import finals, run_leg

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


# -- through legs: the same speech, both dialects, one engine ----------------------------------

SPOKEN = ["please call me back tomorrow morning", 1.2, "the order number is ready", 0.8]


def endpoint(server: EngineServer, dialect: str) -> AsrEndpoint:
    return AsrEndpoint(
        url=server.url,
        model=server.model,
        api_key=server.api_key,
        dialect=dialect,
        language="en",
        stall_timeout_s=30,
    )


@pytest.mark.parametrize(
    ("dialect", "timing"), [("vllm", Timing.STEP_CLOCK), ("openai", Timing.SERVER)]
)
async def test_a_leg_on_either_dialect_stores_the_words_on_the_leg_clock(
    engine_server: EngineServer, tmp_path: Path, dialect: str, timing: Timing
) -> None:
    speech = build(SPOKEN, by_word=True)
    pcm = (np.clip(speech.audio, -1, 1) * 32767).astype(np.int16)
    run = await run_leg(tmp_path / "t.db", pcm, endpoint=endpoint(engine_server, dialect))
    said = [s for s in SPOKEN if isinstance(s, str)]
    texts = [" ".join(normalize(s.text).split()) for s in finals(run)]
    assert " ".join(texts) == " ".join(said), texts
    assert run.result.failure is None and run.result.gaps_ms == 0
    words = [w for s in finals(run) for w in s.words]
    assert {w.timing for w in words} == {timing}
    assert {s.timing for s in finals(run)} == {timing}
    # Each word lands on its spoken span (flite word by word), on either dialect's clock: no
    # later than the word's end, and no earlier than whisper's word times are (it places word
    # starts up to ~490 ms early on these clips, measured on both dialects alike).
    pairs = list(zip(words, speech.words, strict=True))
    assert all(s.start_ms - 500 < w.start_ms < s.end_ms for w, s in pairs), pairs
    with sqlite3.connect(run.db) as db:  # what is stored says how it was timed
        stored = {row[0] for row in db.execute("SELECT timing FROM words")}
    assert stored == {timing.value}


async def test_an_openai_session_is_renewed_at_a_turn_boundary_without_loss(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    speech = build(SPOKEN)
    pcm = (np.clip(speech.audio, -1, 1) * 32767).astype(np.int16)
    settings = LegSettings(session_max_s=2.0)  # the 60-minute cap, scaled down
    run = await run_leg(
        tmp_path / "t.db",
        pcm,
        endpoint=endpoint(engine_server, "openai"),
        settings=settings,
        realtime=True,  # a session ages as the call goes
    )
    texts = [" ".join(normalize(s.text).split()) for s in finals(run)]
    assert texts == [s for s in SPOKEN if isinstance(s, str)]
    sessions = [e for e in run.transcript.events if e.kind == "asr.session"]
    assert len(sessions) == 2, sessions  # one renewal, after the first turn
    assert run.result.failure is None and run.result.gaps_ms == 0


async def test_bridge_check_names_a_server_of_the_other_dialect(
    engine_server: EngineServer,
) -> None:
    good = await check_server(endpoint(engine_server, "openai"))
    assert good.ok, good.lines
    assert "OpenAI transcription session" in good.lines[-1]
    # The engine's vLLM dialect, asked for an OpenAI session: vLLM's session.created shape.
    plain = replace(endpoint(engine_server, "openai"), url=engine_server.url + "?intent=realtime")
    wrong = await check_server(plain)
    assert not wrong.ok
    assert (
        "speaks vLLM's realtime dialect, not OpenAI's transcription session; set dialect = \"vllm\""
        in (wrong.lines[-1])
    )
    # And the other way round.
    asked = replace(
        endpoint(engine_server, "vllm"), url=engine_server.url + "?intent=transcription"
    )
    other = await check_server(asked)
    assert not other.ok
    assert 'set dialect = "openai"' in other.lines[-1], other.lines


async def test_a_g711_leg_is_transcribed_from_the_phones_own_bytes(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    speech = build(SPOKEN)
    narrow = soxr.resample(speech.audio, 16_000, 8_000)
    pcm = (np.clip(narrow, -1, 1) * 32767).astype(np.int16)
    run = await run_leg(
        tmp_path / "t.db",
        pcm,
        endpoint=endpoint(engine_server, "openai"),
        encoding=AudioEncoding.PCMU,  # audio/pcmu on the wire (tests/core: bit for bit)
        rate=8_000,
    )
    texts = [" ".join(normalize(s.text).split()) for s in finals(run)]
    assert texts == [s for s in SPOKEN if isinstance(s, str)]
