"""A leg on the OpenAI dialect across two real engine servers (in-process, scripted recognizer,
real sockets, a real SQLite file): when its server goes away mid-call the leg moves to the other
and every turn is transcribed exactly once - turns in flight are heard again as the same turns."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np

from bridge.asr.endpoint import AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.core.audio import LegAudio
from bridge.core.types import (
    AudioEncoding,
    CallId,
    CallInfo,
    Gap,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    Segment,
    Timing,
)
from bridge.engine import EngineConfig, start_engine_server
from bridge.engine.recognizer import ScriptedRecognizer, TimedWord
from bridge.leg import Leg
from storage import TranscriptStore

WORDS = [TimedWord(" hello", 4000, 8000), TimedWord(" world.", 8000, 12000)]
RATE = 16_000


def turn() -> bytes:
    """One second of a loud tone, then a pause of 0.96 s: one turn on the leg."""
    t = np.arange(RATE) / RATE
    tone = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    return tone.tobytes() + bytes(2 * int(0.96 * RATE))


async def test_an_openai_leg_moves_to_the_other_server_and_every_turn_is_text_once(
    tmp_path: Path,
) -> None:
    engines = [
        await start_engine_server(EngineConfig(max_legs=2), recognizer=ScriptedRecognizer(WORDS))
        for _ in range(2)
    ]
    a, b = engines
    pool = AsrPool(
        [
            AsrEndpoint(url=e.url, model=e.model, dialect="openai", max_legs=budget)
            for e, budget in ((a, 2), (b, 1))
        ],
        ["a", "b"],
    )
    finals: list[Segment] = []
    first = asyncio.Event()

    def listen(_: LegInfo, item: Segment | Gap) -> None:
        if isinstance(item, Segment) and item.final:
            finals.append(item)
            first.set()

    try:
        async with await TranscriptStore.open(tmp_path / "t.db") as store:
            now = int(time.time() * 1000)
            call = CallId(uuid.uuid4().hex)
            await store.add_call(CallInfo(call, LegSource.FILE, now, title="failover"))
            info = LegInfo(call, LegId("l1"), LegRole.CALLER, "caller", "x", LegSource.FILE, now)
            await store.add_leg(info)
            leg = Leg(info, LegAudio(RATE, AudioEncoding.PCM16), pool, store, listener=listen)
            leg.start()
            assert leg.client.backend.name == "a"  # the larger free budget
            leg.receive_frame(turn())
            await asyncio.wait_for(first.wait(), 20)
            # Turn 2 is committed to a; a goes away before it answers.
            leg.receive_frame(turn()[: 2 * int(1.9 * RATE)])
            await a.close()
            leg.receive_frame(turn()[2 * int(1.9 * RATE) :])
            leg.receive_frame(turn())
            result = await leg.finish(timeout_s=30)
            stored = await store.get_call(call)
    finally:
        for engine in engines:
            await engine.close()
    assert result.failure is None and result.gaps_ms == 0
    assert leg.client.backend.name == "b" and leg.client.failovers == 1
    assert [(s.seq, s.text) for s in finals] == [(n, "hello world.") for n in range(3)]
    assert stored is not None
    assert [(s.seq, s.text, s.timing) for s in stored.segments] == [
        (n, "hello world.", Timing.SERVER) for n in range(3)
    ]
    # The scripted words are 0.25 s into each turn's audio: a turn ends once 0.8 s of a pause
    # is in (80 ms chunks), so the second starts at 1.84 s and the third at 3.76 s.
    assert [s.words[0].start_ms for s in stored.segments] == [250, 2090, 4010]
    # Turn 2 was committed to a and had no text when a went: b heard it again, as turn 2.
    [moved] = [e.detail for e in stored.events if e.kind == "asr.failover"]
    assert moved == "from=a to=b replay_ms=1920", moved
