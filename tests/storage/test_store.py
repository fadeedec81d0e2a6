"""Reading the store: listing, whole transcripts, id prefixes, readers beside the writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.core.types import (
    CallId,
    CallInfo,
    Gap,
    LegEvent,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    Segment,
    Timing,
    Word,
)
from bridge.errors import StorageError
from storage import CallRecord, CallTranscript, LegRecord, TranscriptStore

from .conftest import call, leg, segment


async def test_list_calls_newest_first_with_legs_and_state(store: TranscriptStore) -> None:
    for call_id, started in [("b", 2_000), ("c", 3_000), ("a", 1_000)]:
        await store.add_call(call(call_id, started_at_ms=started))
    await store.add_leg(leg("b-1", call_id="b"))
    await store.add_leg(leg("b-2", call_id="b"))
    await store.end_call("b", ended_at_ms=62_000, cause="bye")

    calls = await store.list_calls()
    assert [c.call_id for c in calls] == ["c", "b", "a"]
    b = calls[1]
    assert isinstance(b, CallRecord)
    assert (b.leg_count, b.active, b.duration_ms, b.end_cause) == (2, False, 60_000, "bye")
    assert (calls[0].leg_count, calls[0].active, calls[0].duration_ms) == (0, True, None)

    assert [c.call_id for c in await store.list_calls(limit=2)] == ["c", "b"]
    assert [c.call_id for c in await store.list_calls(limit=2, offset=2)] == ["a"]
    assert await store.list_calls(offset=3) == []
    with pytest.raises(ValueError):
        await store.list_calls(limit=-1)


async def test_get_call_returns_everything_in_order(store: TranscriptStore) -> None:
    assert await store.get_call("call-1") is None
    await store.add_call(call())
    await store.add_leg(leg("leg-b", started_at_ms=1_700_000_000_500, role=LegRole.AGENT))
    await store.add_leg(leg("leg-a"))
    # Interleaved utterances; equal start times are ordered by leg id.
    store.put_segment(segment("agent later", seq=1, leg_id="leg-b", start_ms=3_000, final=True))
    store.put_segment(segment("caller first", seq=0, leg_id="leg-a", start_ms=0, final=True))
    store.put_segment(segment("agent first", seq=0, leg_id="leg-b", start_ms=1_000, final=True))
    store.put_segment(segment("same time b", seq=2, leg_id="leg-b", start_ms=5_000))
    store.put_segment(segment("same time a", seq=1, leg_id="leg-a", start_ms=5_000))
    store.put_gap(Gap(CallId("call-1"), LegId("leg-b"), 2_000, 400, "asr.unreachable"))
    store.put_gap(Gap(CallId("call-1"), LegId("leg-a"), 900, 80, "overflow"))
    store.put_event(LegEvent(CallId("call-1"), LegId("leg-b"), 9_000, "asr.recycle", "silence"))
    store.put_event(LegEvent(CallId("call-1"), None, 1_700_000_000_100, "call.answered"))
    await store.end_leg("leg-a", ended_at_ms=1_700_000_010_000, duration_ms=10_000)

    transcript = await store.get_call("call-1")
    assert isinstance(transcript, CallTranscript)
    assert transcript.call.call_id == "call-1" and transcript.call.leg_count == 2
    assert [lg.leg_id for lg in transcript.legs] == ["leg-a", "leg-b"]  # by start time
    leg_a, leg_b = transcript.legs
    assert isinstance(leg_a, LegRecord)
    assert (leg_a.active, leg_a.duration_ms, leg_b.active, leg_b.role) == (
        False,
        10_000,
        True,
        LegRole.AGENT,
    )
    assert [s.text for s in transcript.segments] == [
        "caller first",
        "agent first",
        "agent later",
        "same time a",
        "same time b",
    ]
    first = transcript.segments[0]
    assert first.final and first.call_id == "call-1"
    assert first.words == (Word("caller", 0, 100), Word("first", 100, 200))
    assert not transcript.segments[-1].final
    assert [(g.leg_id, g.start_ms) for g in transcript.gaps] == [("leg-a", 900), ("leg-b", 2_000)]
    assert [e.kind for e in transcript.events] == ["asr.recycle", "call.answered"]
    assert transcript.events[1].leg_id is None


async def test_timing_of_segments_and_words_round_trips(one_leg: TranscriptStore) -> None:
    store = one_leg
    # A partial revision from the step clock, then the final with server-stated times: the
    # stored row and its words take the final's timing, not the first revision's.
    store.put_segment(segment("hello wor", seq=0))
    words = (
        Word("hello", 1_000, 1_400, Timing.SERVER),
        Word("world", 1_400, 1_900, Timing.ARRIVAL),
    )
    final = Segment(
        CallId("call-1"), LegId("leg-a"), 0, 1_000, 1_900, "hello world", True, words, Timing.SERVER
    )
    store.put_segment(final)
    plain = segment("step clock", seq=1, start_ms=2_000, final=True)
    store.put_segment(plain)
    await store.flush()

    transcript = await store.get_call("call-1")
    assert transcript is not None
    assert transcript.segments == (final, plain)
    stored = transcript.segments[0]
    assert stored.timing is Timing.SERVER
    assert [w.timing for w in stored.words] == [Timing.SERVER, Timing.ARRIVAL]
    assert transcript.segments[1].timing is Timing.STEP_CLOCK
    assert {w.timing for w in transcript.segments[1].words} == {Timing.STEP_CLOCK}


async def test_find_call_id_by_prefix(store: TranscriptStore) -> None:
    ids = [
        "3f2a9c1e-0000-4000-8000-000000000001",
        "3f2a9c1f-0000-4000-8000-000000000002",
        "7b00aa00-0000-4000-8000-000000000003",
        "abc",
        "abcd",
    ]
    for n, call_id in enumerate(ids):
        await store.add_call(call(call_id, started_at_ms=n))
    assert await store.find_call_id("3f2a9c1e") == ids[0]
    assert await store.find_call_id("7") == ids[2]
    assert await store.find_call_id(ids[1]) == ids[1]
    assert await store.find_call_id("abc") == "abc"  # an exact id wins over longer ones
    assert await store.find_call_id("0") is None
    assert await store.find_call_id("zzz") is None
    with pytest.raises(StorageError, match="ambiguous") as info:
        await store.find_call_id("3f2a9c1")
    assert ids[0] in str(info.value) and ids[1] in str(info.value)
    with pytest.raises(StorageError):
        await store.find_call_id("")


async def test_readers_do_not_wait_for_a_writer(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    store.put_segment(segment("committed", final=True))
    await store.flush()
    peek.execute("BEGIN IMMEDIATE")  # another connection is in the middle of writing
    peek.execute("INSERT INTO calls (call_id, source, started_at_ms) VALUES ('x', 'sip', 0)")
    try:
        calls = await asyncio.wait_for(store.list_calls(), timeout=0.5)
        transcript = await asyncio.wait_for(store.get_call("call-1"), timeout=0.5)
    finally:
        peek.execute("ROLLBACK")
    assert [c.call_id for c in calls] == ["call-1"]  # the uncommitted call is invisible
    assert transcript is not None and [s.text for s in transcript.segments] == ["committed"]


async def test_concurrent_readers_see_consistent_snapshots(one_leg: TranscriptStore) -> None:
    store = one_leg
    done = asyncio.Event()

    async def write() -> None:
        for seq in range(200):
            store.put_segment(segment(f"word{seq} more{seq}", seq=seq, final=seq % 2 == 0))
            if seq % 10 == 0:
                await store.flush()
            await asyncio.sleep(0)
        await store.flush()
        done.set()

    async def read() -> list[int]:
        seen: list[int] = []
        while not done.is_set():
            transcript = await store.get_call("call-1")
            assert transcript is not None
            # Every segment arrives with its two words, in the same snapshot.
            assert all(len(s.words) == 2 for s in transcript.segments)
            seen.append(len(transcript.segments))
            await store.list_calls()
        return seen

    writer = asyncio.create_task(write())
    seen_by = await asyncio.gather(read(), read(), read())
    await writer
    for seen in seen_by:
        assert seen == sorted(seen)  # never goes back
    final = await store.get_call("call-1")
    assert final is not None and len(final.segments) == 200


async def test_end_active_calls_closes_what_a_dead_process_left_open(tmp_path: Path) -> None:
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        for n in ("a", "b"):
            await store.add_call(CallInfo(CallId(n), LegSource.SIP, 1000))
            leg = LegInfo(CallId(n), LegId(n + "1"), LegRole.CALLER, "", "", LegSource.SIP, 1000)
            await store.add_leg(leg)
        await store.end_call("a", ended_at_ms=2000, cause="bye")
        assert await store.end_active_calls(ended_at_ms=3000, cause="bridge-restarted") == 1
        calls = {c.call_id: c for c in await store.list_calls()}
        assert (calls["a"].end_cause, calls["a"].ended_at_ms) == ("bye", 2000)
        assert (calls["b"].end_cause, calls["b"].ended_at_ms) == ("bridge-restarted", 3000)
        transcript = await store.get_call("b")
        assert transcript is not None and not transcript.legs[0].active
        assert await store.end_active_calls(ended_at_ms=4000, cause="x") == 0


async def test_end_dead_calls_ends_each_at_its_last_activity_and_marks_the_untranscribed_rest(
    store: TranscriptStore,
) -> None:
    """kill -9 (issue 12, item 11): the restart does not stamp its own time on the calls."""
    import time

    from storage import MEDIA_DURATION_EVENT

    now = int(time.time() * 1000)
    t0 = now - 600_000  # the dead process started them ten minutes ago
    # An upload: stereo, 60 s of audio, killed after finals up to 12.4 s on one leg.
    await store.add_call(call("up", started_at_ms=t0))
    store.put_event(LegEvent(CallId("up"), None, t0 + 5, MEDIA_DURATION_EVENT, "duration_ms=60000"))
    await store.add_leg(leg("up-l", call_id="up", started_at_ms=t0 + 10))
    await store.add_leg(leg("up-r", call_id="up", started_at_ms=t0 + 10))
    store.put_segment(segment("hello there", final=True, leg_id="up-l", call_id="up", start_ms=0))
    store.put_segment(
        segment("how are you", seq=1, final=True, leg_id="up-l", call_id="up", start_ms=12_100)
    )
    store.put_gap(Gap(CallId("up"), LegId("up-r"), 0, 3_000, "asr-unreachable"))
    # A live call with no known length: legs closed at what they reached, no gap invented.
    await store.add_call(call("live", started_at_ms=t0 + 1000))
    await store.add_leg(leg("live-a", call_id="live", started_at_ms=t0 + 1000))
    store.put_event(LegEvent(CallId("live"), LegId("live-a"), 7_000, "sip.hold", ""))
    # A call with nothing but its start.
    await store.add_call(call("bare", started_at_ms=t0 + 2000))
    # An ended call is left alone.
    await store.add_call(call("done", started_at_ms=t0))
    await store.end_call("done", ended_at_ms=t0 + 9, cause="bye")
    await store.flush()
    last_write = int(time.time() * 1000)

    dead = {
        d.call_id: d
        for d in await store.end_dead_calls(cause="bridge-restarted", now_ms=now + 3_600_000)
    }
    assert set(dead) == {"up", "live", "bare"}
    # The upload's last activity is its segments' write, not the restart an hour later.
    assert now - 1000 <= dead["up"].ended_at_ms <= last_write
    assert (dead["up"].legs_closed, dead["up"].untranscribed_ms) == (2, 60_000 - 12_400 + 57_000)
    assert dead["bare"].ended_at_ms == t0 + 2000 and dead["bare"].legs_closed == 0
    assert dead["live"].untranscribed_ms == 0

    up = await store.get_call("up")
    assert up is not None
    assert (up.call.end_cause, up.call.ended_at_ms) == ("bridge-restarted", dead["up"].ended_at_ms)
    assert [(lg.leg_id, lg.duration_ms, lg.active) for lg in up.legs] == [
        ("up-l", 60_000, False),
        ("up-r", 60_000, False),
    ]
    assert all(lg.ended_at_ms == dead["up"].ended_at_ms for lg in up.legs)
    rest = [(g.leg_id, g.start_ms, g.duration_ms) for g in up.gaps if "not transcribed" in g.reason]
    assert sorted(rest) == [("up-l", 12_400, 47_600), ("up-r", 3_000, 57_000)]
    assert [s.text for s in up.segments if s.final] == ["hello there", "how are you"]
    live = await store.get_call("live")
    assert live is not None and live.gaps == ()
    # A live leg's clock runs with the wall clock: it was still there 7 s after it started.
    assert dead["live"].ended_at_ms == t0 + 8000
    assert [(lg.duration_ms, lg.ended_at_ms) for lg in live.legs] == [(7_000, t0 + 8000)]
    done = await store.get_call("done")
    assert done is not None and (done.call.end_cause, done.call.ended_at_ms) == ("bye", t0 + 9)
    # Nothing is left to end; a second start-up changes nothing.
    assert await store.end_dead_calls(cause="bridge-restarted", now_ms=now) == []
