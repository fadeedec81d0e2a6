"""The leg pipeline against the REAL vLLM /v1/realtime server on CPU (tiny Voxtral, scripted text).

Everything is asserted on what lands in SQLite: the scripted words with the times the step clock
gives them, generations accounting for every sample, gaps, and finals surviving a server crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import websockets
from engine_server import EngineServer
from vllm_server import VllmServer, auth_headers

from bridge.asr.client import AsrEndpoint
from bridge.asr.pool import AsrTarget
from bridge.core.asr_protocol import AsrStream, ServerError, expected_steps
from bridge.core.audio import LegAudio
from bridge.core.g711 import encode_ulaw
from bridge.core.types import (
    AudioEncoding,
    CallId,
    CallInfo,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    Segment,
    Word,
)
from bridge.leg import COUNTERS, Leg, LegResult, LegSettings, Listener, live_legs
from storage import CallTranscript, TranscriptStore

pytestmark = pytest.mark.integration

RATE = 16_000
STEP_MS = 80


def tone(seconds: float, freq: float = 440.0, dbfs: float = -20.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def script_words(script: str, steps: int, offset_ms: int = 0) -> list[Word]:
    """Words the scripted server says in ``steps`` steps, timed by the step clock."""
    words: list[Word] = []
    current: list[str] = []
    start = last = 0
    for k in range(steps):
        ch = script[k % len(script)]
        if ch == "|":
            continue
        if ch.isspace():
            if current:
                words.append(Word("".join(current), offset_ms + start * 80, offset_ms + last * 80))
                current = []
            continue
        if not current:
            start = k
        current.append(ch)
        last = k + 1
    if current:
        words.append(Word("".join(current), offset_ms + start * 80, offset_ms + last * 80))
    return words


def endpoint_for(server: VllmServer) -> AsrEndpoint:
    return AsrEndpoint(
        url=server.url, model=server.model, api_key=server.api_key, stall_timeout_s=10
    )


@dataclass
class LegRun:
    transcript: CallTranscript
    result: LegResult
    db: Path

    def generations(self) -> list[dict[str, str]]:
        out = []
        for event in self.transcript.events:
            if event.kind == "asr.generation":
                out.append(dict(re.findall(r"(\w+)=(\S+)", event.detail)))
        return out


async def run_leg(
    db: Path,
    pcm: np.ndarray,
    *,
    realtime: bool = False,
    settings: LegSettings | None = None,
    encoding: AudioEncoding = AudioEncoding.PCM16,
    rate: int = RATE,
    at_second: dict[int, Callable[[], Awaitable[None]]] | None = None,
    endpoint: AsrTarget,
    listener: Listener | None = None,
) -> LegRun:
    """Feed ``pcm`` (int16 at ``rate``) through one leg in 20 ms frames, like an ingest would."""
    call_id = CallId(uuid.uuid4().hex)
    async with await TranscriptStore.open(db) as store:
        now = int(time.time() * 1000)
        await store.add_call(CallInfo(call_id, LegSource.FILE, now, title="test"))
        info = LegInfo(
            call_id, LegId(uuid.uuid4().hex), LegRole.CALLER, "test", "x", LegSource.FILE, now
        )
        await store.add_leg(info)
        leg = Leg(
            info, LegAudio(rate, encoding), endpoint, store, settings=settings, listener=listener
        )
        leg.start()
        frame = rate // 50
        started = time.monotonic()
        hooks = dict(at_second or {})
        for i in range(0, len(pcm), frame):
            block = pcm[i : i + frame]
            payload = encode_ulaw(block) if encoding is AudioEncoding.PCMU else block.tobytes()
            leg.receive_frame(payload)
            sent_s = (i + frame) / rate
            if hooks and int(sent_s) in hooks and sent_s == int(sent_s):
                await hooks.pop(int(sent_s))()
            if realtime:
                delay = started + sent_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % rate == 0:
                await leg.client.wait_for_window(5 * RATE)
        result = await leg.finish(timeout_s=120)
        await store.end_call(call_id, ended_at_ms=int(time.time() * 1000), cause="completed")
        transcript = await store.get_call(call_id)
    assert transcript is not None
    return LegRun(transcript, result, db)


def finals(run: LegRun) -> list[Segment]:
    return [s for s in run.transcript.segments if s.final]


async def test_scripted_words_are_stored_with_step_clock_times(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    audio = np.concatenate([tone(2.0), silence(1.0)])  # 3 s: 48 steps (vllm-cpu.md §4.1)
    run = await run_leg(tmp_path / "t.db", audio, endpoint=endpoint_for(vllm_server))
    steps = expected_steps(len(audio))
    assert steps == 48
    [generation] = run.generations()
    assert generation["steps"] == generation["completion_tokens"] == str(steps)
    assert generation["solicited"] == "True"
    # Step k is frame k: "hello" starts at step 7 -> 560 ms, ends after step 11 -> 960 ms.
    # Steps past the audio (right padding) are clamped to the leg's end, 3000 ms.
    expected = [
        Word(w.text, min(w.start_ms, 3000), min(w.end_ms, 3000))
        for w in script_words(vllm_server.script, steps)
    ]
    stored = [w for s in finals(run) for w in s.words]
    assert stored == expected
    assert stored[:2] == [Word("hello", 560, 960), Word("world.", 1040, 1520)]
    assert [s.text for s in finals(run)][:2] == ["hello world.", "how are you?"]
    assert run.result.samples == len(audio)


async def test_g711_leg_at_8khz_has_the_same_clock(vllm_server: VllmServer, tmp_path: Path) -> None:
    audio = tone(2.0, rate=8000)
    run = await run_leg(
        tmp_path / "t.db",
        audio,
        endpoint=endpoint_for(vllm_server),
        encoding=AudioEncoding.PCMU,
        rate=8000,
    )
    assert run.result.samples == 2 * RATE
    [generation] = run.generations()
    assert generation["steps"] == str(expected_steps(2 * RATE)) == "35"
    assert finals(run)[0].words[0] == Word("hello", 560, 960)


async def test_deltas_arrive_one_per_80ms_after_562ms_in_real_time(
    vllm_server: VllmServer,
) -> None:
    """Client-side timing of a live leg: first delta once 9000 samples were sent, then 12.5/s."""
    stream = AsrStream(vllm_server.model)
    chunk = tone(0.08).tobytes()
    arrivals: list[float] = []
    async with websockets.connect(
        vllm_server.url, additional_headers=auth_headers(vllm_server)
    ) as ws:
        stream.receive_connected()
        stream.receive_message(await ws.recv())
        for frame in stream.data_to_send():
            await ws.send(frame)

        async def reader() -> None:
            while len(arrivals) < 30:
                stream.receive_message(await ws.recv())
                arrivals.extend(time.monotonic() for _ in stream.events_received())

        task = asyncio.create_task(reader())
        started = time.monotonic()
        for i in range(40):  # 3.2 s at real-time pace
            stream.send_audio(chunk)
            for frame in stream.data_to_send():
                await ws.send(frame)
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.08 - time.monotonic()))
        await asyncio.wait_for(task, 10)
    first = arrivals[0] - started
    gaps = np.diff(arrivals[1:25])
    # 9000 samples are complete when the 8th 80 ms chunk is sent, at 560 ms.
    assert 0.55 <= first <= 1.2, first
    assert 0.06 <= float(np.median(gaps)) <= 0.1, gaps


async def test_unsolicited_done_at_max_model_len_continues_without_loss(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    max_steps = vllm_server.max_model_len - 39  # the server stops the stream there (§1.5 item 7)
    seconds = max_steps * STEP_MS / 1000 + 6
    audio = tone(seconds)
    settings = LegSettings(recycle_after_s=3600)  # no recycling: reach the server's limit
    run = await run_leg(
        tmp_path / "t.db", audio, settings=settings, endpoint=endpoint_for(vllm_server)
    )
    gens = run.generations()
    assert len(gens) == 2
    assert gens[0]["solicited"] == "False"
    assert int(gens[0]["steps"]) == max_steps == int(gens[0]["completion_tokens"])
    assert int(gens[0]["samples"]) == max_steps * 1280
    # The second generation starts at the first frame without a step: every sample covered.
    assert sum(int(g["samples"]) for g in gens) == len(audio)
    assert int(gens[1]["steps"]) == expected_steps(int(gens[1]["samples"]))
    assert run.transcript.gaps == ()
    # The script restarts with the new generation, at its leg-clock offset.
    offset_ms = max_steps * STEP_MS
    second = [w for s in finals(run) for w in s.words if w.start_ms >= offset_ms]
    assert second[:2] == script_words(vllm_server.script, 20, offset_ms)[:2]


async def test_recycling_at_pauses_loses_and_duplicates_nothing(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    # A live leg: talk 2 s, pause 1 s, four times; with a 1.5 s age limit every pause recycles.
    audio = np.concatenate([np.concatenate([tone(2.0), silence(1.0)]) for _ in range(4)])
    settings = LegSettings(recycle_after_s=1.5, recycle_pause_ms=400)
    run = await run_leg(
        tmp_path / "t.db",
        audio,
        realtime=True,
        settings=settings,
        endpoint=endpoint_for(vllm_server),
    )
    gens = run.generations()
    assert len(gens) >= 3
    assert all(g["solicited"] == "True" for g in gens)
    # Steps across all sessions account for all samples.
    assert sum(int(g["samples"]) for g in gens) == len(audio)
    for g in gens:
        assert int(g["steps"]) == expected_steps(int(g["samples"])) == int(g["completion_tokens"])
    # Segment numbering continues across generations; no (leg, seq) twice.
    seqs = [s.seq for s in run.transcript.segments]
    assert seqs == sorted(set(seqs))
    assert run.transcript.gaps == ()


async def test_server_killed_and_restarted_mid_leg(vllm_server: VllmServer, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    finals_at_kill: list[str] = []

    async def kill() -> None:
        # Finals produced so far must already be durable in SQLite (<= 1 s).
        await asyncio.sleep(1.0)
        with sqlite3.connect(db) as conn:
            finals_at_kill.extend(
                r[0] for r in conn.execute("SELECT text FROM segments WHERE final")
            )
        vllm_server.kill()

    background: list[asyncio.Task[None]] = []

    async def restart() -> None:
        # In the background: the call goes on at real time while vLLM boots (~30 s).
        background.append(asyncio.create_task(asyncio.to_thread(vllm_server.restart)))

    audio = tone(75.0)
    settings = LegSettings(max_buffer_s=4.0, recycle_after_s=3600)
    endpoint = AsrEndpoint(
        url=vllm_server.url, model=vllm_server.model, api_key=vllm_server.api_key, stall_timeout_s=5
    )
    try:
        run = await run_leg(
            db,
            audio,
            realtime=True,
            settings=settings,
            endpoint=endpoint,
            at_second={6: kill, 8: restart},
        )
    finally:
        await asyncio.gather(*background, return_exceptions=True)
        if not vllm_server.running:
            vllm_server.restart()
    assert finals_at_kill, "no final segment was stored before the kill"
    stored = [s.text for s in finals(run)]
    assert stored[: len(finals_at_kill)] == finals_at_kill
    # The leg buffered 4 s while the server was down, then recorded what it could not keep.
    [gap] = run.transcript.gaps
    assert gap.reason == "ASR backlog over the buffer bound"
    assert gap.duration_ms >= 3000
    # ... and resumed: text after the gap, every sample either transcribed or in the gap.
    assert any(s.start_ms > gap.start_ms + gap.duration_ms for s in finals(run))
    gens = run.generations()
    assert gens[0]["solicited"] == "False"
    covered = sum(int(g["samples"]) for g in gens)
    assert covered + gap.duration_ms * 16 == len(audio)


async def _raw_error(
    server: VllmServer | EngineServer, frames: list[str], update: bool = True
) -> str:
    async with websockets.connect(server.url, additional_headers=auth_headers(server)) as ws:
        await ws.recv()
        if update:
            await ws.send(json.dumps({"type": "session.update", "model": server.model}))
        for frame in frames:
            await ws.send(frame)
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if json.loads(message)["type"] == "error":
                return str(message)


ERROR_CASES = {
    "invalid_json": (["{nope"], True, False),
    "unknown_event": (['{"type":"response.create"}'], True, False),
    "invalid_event": (['{"type":"session.update"}'], False, False),
    "model_not_found": (['{"type":"session.update","model":"nope/nope"}'], False, False),
    "invalid_audio": (['{"type":"input_audio_buffer.append","audio":"YWJj"}'], True, False),
    "model_not_validated": (['{"type":"input_audio_buffer.commit"}'], False, False),
    "processing_error": (['{"type":"input_audio_buffer.append"}'], True, True),
}


@pytest.mark.parametrize("code", sorted(ERROR_CASES))
async def test_every_real_error_event_maps_to_an_action(
    realtime_server: VllmServer | EngineServer, code: str
) -> None:
    frames, update, retryable = ERROR_CASES[code]
    message = await _raw_error(realtime_server, frames, update)
    assert json.loads(message)["code"] == code
    stream = AsrStream(realtime_server.model)
    stream.receive_connected()
    stream.receive_message('{"type":"session.created","id":"s","created":0}')
    stream.send_audio(bytes(2560))
    stream.events_received()
    stream.receive_message(message)
    event = stream.events_received()[0]
    assert isinstance(event, ServerError)
    assert event.error.code == code
    assert event.error.retryable is retryable
    assert event.error.action and code in str(event.error)


async def test_wrong_model_fails_the_leg_with_a_clear_reason(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    endpoint = AsrEndpoint(url=vllm_server.url, model="not-served", api_key=vllm_server.api_key)
    run = await run_leg(tmp_path / "t.db", tone(1.0), endpoint=endpoint)
    assert run.result.failure is not None and "model_not_found" in run.result.failure
    assert "--model" in run.result.failure
    assert sum(g.duration_ms for g in run.transcript.gaps) == 1000


async def test_unreachable_server_gives_up_and_records_the_gap(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{port}/v1/realtime", model="m", give_up_after_s=1.0)
    run = await run_leg(tmp_path / "t.db", tone(1.0), endpoint=endpoint)
    assert run.result.failure is not None and "connection refused" in run.result.failure
    assert [(g.start_ms, g.duration_ms) for g in run.transcript.gaps] == [(0, 1000)]


async def test_wrong_api_key_fails_at_once_with_the_fix(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    for key in (None, "wrong"):
        endpoint = AsrEndpoint(url=vllm_server.url, model=vllm_server.model, api_key=key)
        run = await run_leg(tmp_path / f"{key}.db", tone(1.0), endpoint=endpoint)
        assert run.result.failure is not None
        assert "refused the API key (HTTP 401): pass --api-key" in run.result.failure
        assert [(g.start_ms, g.duration_ms) for g in run.transcript.gaps] == [(0, 1000)]


async def test_stalled_server_is_left_and_the_leg_resumes_without_loss(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """vLLM frozen (SIGSTOP) mid-leg: no event for stall_timeout_s -> reconnect, replay, no gap."""
    pgid = vllm_server.pid
    assert pgid is not None

    async def freeze() -> None:
        os.killpg(pgid, signal.SIGSTOP)

    async def thaw() -> None:
        os.killpg(pgid, signal.SIGCONT)

    endpoint = AsrEndpoint(
        url=vllm_server.url,
        model=vllm_server.model,
        api_key=vllm_server.api_key,
        stall_timeout_s=1.5,
        open_timeout_s=1.0,
    )
    audio = tone(14.0)
    try:
        run = await run_leg(
            tmp_path / "t.db",
            audio,
            realtime=True,
            endpoint=endpoint,
            at_second={3: freeze, 8: thaw},
        )
    finally:
        os.killpg(pgid, signal.SIGCONT)
    gens = run.generations()
    assert gens[0]["solicited"] == "False"  # the stalled generation was abandoned
    assert run.transcript.gaps == ()  # 5 s fit in the leg's buffer
    assert sum(int(g["samples"]) for g in gens) == len(audio)
    assert run.result.failure is None
    # The new generation starts at the first frame the stalled one never stepped over.
    resumed_ms = int(gens[0]["steps"]) * STEP_MS
    words = [w for s in finals(run) for w in s.words]
    assert Word("hello", resumed_ms + 560, resumed_ms + 960) in words


async def test_metrics_count_every_delta_and_measure_step_lag(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    lags: list[float | None] = []

    async def sample() -> None:
        lags.extend(leg.step_lag_ms for leg in live_legs())

    before = COUNTERS.deltas
    await run_leg(
        tmp_path / "t.db",
        tone(2.0),
        realtime=True,
        endpoint=endpoint_for(vllm_server),
        at_second={2: sample},
    )
    assert COUNTERS.deltas - before == expected_steps(2 * RATE) == 35
    [lag] = lags  # the one live leg, sampled while it ran
    assert lag is not None and 0 <= lag < 60_000
    assert live_legs() == []  # finished legs leave the live set
