"""``bridge calls`` as a user runs it: a subprocess over a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bridge_cli import bridge

from bridge.core.types import CallId, CallInfo, LegId, LegInfo, LegRole, LegSource
from storage import TranscriptStore

pytestmark = pytest.mark.integration

FAST = "f" * 32  # 9:51 of audio transcribed --fast in 63 s
LIVE = "1" * 32  # a 2:00 call, one leg joined 5 s late
NO_LEGS = "0" * 32  # ended before any leg started
ACTIVE = "a" * 32


async def fill(path: Path) -> None:
    store = await TranscriptStore.open(path)
    start = 1_700_000_000_000
    calls = [
        (FAST, LegSource.FILE, start, [(0, 591_000)], 63_000),
        (LIVE, LegSource.SIP, start + 1000, [(0, 120_000), (5_000, 115_000)], 120_000),
        (NO_LEGS, LegSource.SIP, start + 2000, [], 4_000),
        (ACTIVE, LegSource.SIP, start + 3000, [], None),
    ]
    for call_id, source, started, legs, wall_ms in calls:
        await store.add_call(CallInfo(CallId(call_id), source, started, title=call_id[:1]))
        for n, (offset_ms, audio_ms) in enumerate(legs):
            leg_id = f"{call_id[:8]}-{n}"
            await store.add_leg(
                LegInfo(
                    CallId(call_id),
                    LegId(leg_id),
                    LegRole.CALLER if n == 0 else LegRole.AGENT,
                    f"channel {n}",
                    "pcm16/16000",
                    source,
                    started + offset_ms,
                )
            )
            assert wall_ms is not None
            await store.end_leg(leg_id, ended_at_ms=started + wall_ms, duration_ms=audio_ms)
        if wall_ms is not None:
            await store.end_call(CallId(call_id), ended_at_ms=started + wall_ms, cause="done")
    await store.close()


def test_calls_shows_the_audio_duration_not_the_processing_time(tmp_path: Path) -> None:
    """Issue 13 §7: a ``--fast`` call's 9:51 of audio was listed as 01:03."""
    db = tmp_path / "calls.db"
    asyncio.run(fill(db))
    listed = bridge("calls", "--db", db, timeout_s=30)
    assert listed.returncode == 0, listed.stderr
    durations = {line.split()[0]: line.split()[3] for line in listed.stdout.splitlines()[1:]}
    expected = {
        FAST[:10]: "09:51.0",  # the leg's audio, not 01:03.0 of processing
        LIVE[:10]: "02:00.0",  # the longest leg
        NO_LEGS[:10]: "00:04.0",  # no audio: start to end
        ACTIVE[:10]: "-",
    }
    assert durations == expected, listed.stdout
