"""Voxtral's health guards (issue 16 item 3) against the REAL vLLM server on CPU, asserted on
what lands in SQLite (events, generations, every sample accounted for):

* the blank-token rut (vLLM #47614): a second server whose scripted transcript is blank at every
  step while the leg keeps sending speech-level audio, and the session server, whose script has
  text, as the control;
* late steps: the session server's engine stopped for 3 s mid-leg (SIGSTOP): the leg turns
  ``lagging``, new legs are refused while it is, and it catches up when the engine resumes.

(Idle sessions: a paused media fork keeps its sessions fed, test_fork_audiohook.py.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import endpoint_for, run_leg, silence, tone
from vllm_server import VllmServer, engine_stopped

from bridge.core.asr_protocol import expected_steps
from bridge.leg import LegSettings, capacity_problem

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def blank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A second real vLLM server whose every step is the blank token."""
    server = VllmServer(work_dir=tmp_path_factory.mktemp("vllm-blank"), script="|")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_speech_with_only_blank_steps_starts_a_new_generation(
    blank_server: VllmServer, tmp_path: Path
) -> None:
    # 0.96 s of silence, then 8 s of speech-level audio (whole 80 ms chunks of each): ruts after
    # 2.4 s of it, then after 4.8 s more (the wait doubles while no text comes).
    audio = np.concatenate([silence(0.96), tone(8.0)])
    settings = LegSettings(rut_after_s=2.4, recycle_after_s=3600)
    run = await run_leg(
        tmp_path / "t.db",
        audio,
        realtime=True,
        settings=settings,
        endpoint=endpoint_for(blank_server),
    )
    ruts = [e for e in run.transcript.events if e.kind == "asr.rut"]
    assert [e.detail for e in ruts] == ["speech_s=2.4", "speech_s=4.8"]
    # Each at the leg time the speech had lasted that long.
    assert [e.at_ms for e in ruts] == [960 + 2400, 960 + 2400 + 4800]
    gens = run.generations()
    assert len(gens) == 3 and [g["solicited"] for g in gens] == ["True"] * 3
    assert sum(int(g["samples"]) for g in gens) == len(audio)  # nothing lost, nothing twice
    for g in gens:
        assert int(g["steps"]) == expected_steps(int(g["samples"]))
    assert run.transcript.gaps == () and run.result.failure is None


async def test_text_keeps_the_guard_quiet(vllm_server: VllmServer, tmp_path: Path) -> None:
    """The session server's script has text at least every 1.8 s of steps: no rut."""
    settings = LegSettings(rut_after_s=2.5, recycle_after_s=3600)
    run = await run_leg(
        tmp_path / "t.db",
        tone(8.0),
        realtime=True,
        settings=settings,
        endpoint=endpoint_for(vllm_server),
    )
    assert [e for e in run.transcript.events if e.kind == "asr.rut"] == []
    assert len(run.generations()) == 1
    assert re.search(r"hello", " ".join(s.text for s in run.transcript.segments))


async def test_a_server_behind_real_time_makes_the_leg_lagging_and_refuses_new_legs(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    settings = LegSettings(max_step_lag_ms=1500, recycle_after_s=3600, rut_after_s=0)
    seen: dict[str, str | None] = {}
    stops: list[asyncio.Task[None]] = []
    endpoint = endpoint_for(vllm_server)

    async def stop_engine() -> None:
        with engine_stopped(vllm_server):
            await asyncio.sleep(3.0)
            seen["stopped"] = capacity_problem(endpoint)

    async def at_two_seconds() -> None:  # the leg keeps streaming in real time meanwhile
        stops.append(asyncio.create_task(stop_engine()))

    seen["before"] = capacity_problem(endpoint)
    run = await run_leg(
        tmp_path / "t.db",
        tone(8.0),
        realtime=True,
        settings=settings,
        endpoint=endpoint,
        at_second={2: at_two_seconds},
    )
    await asyncio.gather(*stops)
    assert seen == {
        "before": None,
        "stopped": "the ASR server is behind real time on 1 live leg(s)",
    }
    kinds = [
        (e.kind, e.at_ms)
        for e in run.transcript.events
        if e.kind in ("asr.lagging", "asr.caught_up")
    ]
    assert [k for k, _ in kinds] == ["asr.lagging", "asr.caught_up"], kinds
    lagging, caught_up = kinds
    # Noticed 1.5 s into the stop (+ a chunk), caught up after the engine resumed at 5 s.
    assert 3500 <= lagging[1] <= 3800 and caught_up[1] >= 5000, kinds
    assert capacity_problem(endpoint) is None  # the leg is over: admission is open again
    gens = run.generations()
    assert sum(int(g["samples"]) for g in gens) == 8 * 16000 and run.transcript.gaps == ()
