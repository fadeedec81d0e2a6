"""The batching writer on a real SQLite file: idempotent upserts, durability, batching, overflow."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bridge.core.types import CallId, Gap, LegEvent, LegId
from bridge.errors import StorageError
from storage import TranscriptStore

from .conftest import call, leg, segment

REPO = Path(__file__).resolve().parents[2]


def _segments(conn: sqlite3.Connection) -> list[tuple[str, int, str, int]]:
    rows = conn.execute("SELECT leg_id, seq, text, final FROM segments ORDER BY leg_id, seq")
    return [(str(a), int(b), str(c), int(d)) for a, b, c, d in rows]


def _words(conn: sqlite3.Connection, leg_id: str = "leg-a", seq: int = 0) -> list[str]:
    rows = conn.execute(
        "SELECT text FROM words WHERE leg_id = ? AND seq = ? ORDER BY idx", (leg_id, seq)
    )
    return [str(r[0]) for r in rows]


async def _poll(conn: sqlite3.Connection, sql: str, *, within_s: float) -> list[tuple[object, ...]]:
    """Run ``sql`` until it returns rows or ``within_s`` passes (the event loop keeps running)."""
    deadline = time.monotonic() + within_s
    while True:
        rows = conn.execute(sql).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.01)


# -- idempotent upserts ---------------------------------------------------------------------------


async def test_same_segment_twice_is_one_row(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    store.put_segment(segment("hello there", final=True))
    await store.flush()
    store.put_segment(segment("hello there", final=True))
    await store.flush()
    assert _segments(peek) == [("leg-a", 0, "hello there", 1)]
    assert _words(peek) == ["hello", "there"]


async def test_a_partial_after_the_final_does_not_unfinalise(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    # In one batch ...
    store.put_segment(segment("hello", seq=0))
    store.put_segment(segment("hello world", seq=0, final=True))
    store.put_segment(segment("hello", seq=0))  # replayed partial
    await store.flush()
    assert _segments(peek) == [("leg-a", 0, "hello world", 1)]
    assert _words(peek) == ["hello", "world"]
    # ... and in a later one.
    store.put_segment(segment("hell", seq=0))
    await store.flush()
    assert _segments(peek) == [("leg-a", 0, "hello world", 1)]
    assert _words(peek) == ["hello", "world"]


async def test_words_are_replaced_with_the_segments(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    store.put_segment(segment("one two three", seq=4))
    await store.flush()
    assert _words(peek, seq=4) == ["one", "two", "three"]
    store.put_segment(segment("won too", seq=4))
    await store.flush()
    assert _words(peek, seq=4) == ["won", "too"]
    store.put_segment(segment("", seq=4, final=True))
    await store.flush()
    assert _words(peek, seq=4) == []
    assert _segments(peek) == [("leg-a", 4, "", 1)]


async def test_queued_partials_are_coalesced(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    before = store.commits
    for n in range(1, 51):
        store.put_segment(segment(" ".join(["w"] * n), seq=1))
    await store.flush()
    assert store.commits - before == 1
    assert _segments(peek) == [("leg-a", 1, " ".join(["w"] * 50), 0)]
    assert len(_words(peek, seq=1)) == 50


# -- durability -----------------------------------------------------------------------------------


async def test_a_final_is_committed_within_one_second(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    one_leg.put_segment(segment("durable words", seq=7, final=True))
    started = time.monotonic()
    rows = await _poll(peek, "SELECT text, final FROM segments WHERE seq = 7", within_s=1.0)
    assert rows == [("durable words", 1)], "no final visible to another connection within 1 s"
    assert time.monotonic() - started < 1.0


async def test_partials_gaps_and_events_are_committed_without_flush(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    store.put_segment(segment("so far", seq=8))
    store.put_gap(Gap(CallId("call-1"), LegId("leg-a"), 1000, 480, "asr.unreachable"))
    store.put_event(LegEvent(CallId("call-1"), None, 5, "asr.session", "opened"))
    assert await _poll(peek, "SELECT text FROM segments WHERE seq = 8", within_s=1.0)
    assert await _poll(peek, "SELECT reason FROM gaps", within_s=1.0) == [("asr.unreachable",)]
    assert await _poll(peek, "SELECT kind FROM events", within_s=1.0) == [("asr.session",)]


_KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from tests.storage.conftest import call, leg, segment
    from storage import TranscriptStore

    async def main():
        store = await TranscriptStore.open(sys.argv[1])
        await store.add_call(call())
        await store.add_leg(leg())
        store.put_segment(segment("survives the kill", seq=3, final=True))
        store.put_segment(segment("maybe", seq=4))
        await asyncio.sleep(1.2)  # no flush, no close
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_finals_survive_a_killed_process(db_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(db_path), cwd=REPO
    )
    assert await asyncio.wait_for(proc.wait(), timeout=60) == -signal.SIGKILL
    async with await TranscriptStore.open(db_path) as store:
        transcript = await store.get_call("call-1")
    assert transcript is not None
    finals = [(s.seq, s.text) for s in transcript.segments if s.final]
    assert finals == [(3, "survives the kill")]
    assert transcript.call.active  # nobody ended it


async def test_close_commits_everything_queued(db_path: Path) -> None:
    store = await TranscriptStore.open(db_path)
    await store.add_call(call())
    await store.add_leg(leg())
    for seq in range(20):
        store.put_segment(segment(f"final {seq}", seq=seq, final=True))
    store.put_segment(segment("partial", seq=20))
    store.put_event(LegEvent(CallId("call-1"), LegId("leg-a"), 40, "asr.done"))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="not open"):
        store.put_segment(segment("late", seq=21, final=True))
    conn = sqlite3.connect(db_path)
    try:
        assert len(_segments(conn)) == 21
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    finally:
        conn.close()


# -- batching and overflow ------------------------------------------------------------------------


async def test_many_legs_of_partials_take_few_transactions(
    store: TranscriptStore, peek: sqlite3.Connection
) -> None:
    await store.add_call(call())
    before = store.commits
    await asyncio.gather(*(store.add_leg(leg(f"leg-{n:03}")) for n in range(100)))
    assert store.commits - before <= 3  # 100 awaited add_leg calls, group-committed
    before = store.commits
    started = time.monotonic()
    revisions = 30
    for rev in range(revisions):
        for n in range(100):
            for seq in range(3):
                text = f"leg {n} seq {seq} rev {rev}"
                store.put_segment(segment(text, seq=seq, leg_id=f"leg-{n:03}"))
        await asyncio.sleep(0.02)  # 80 ms steps, compressed
    await store.flush()
    elapsed_s = time.monotonic() - started
    commits = store.commits - before
    # One commit per commit interval (200 ms) at most, plus the flush.
    assert commits <= elapsed_s / 0.2 + 2, (commits, elapsed_s)
    rows = _segments(peek)
    assert len(rows) == 300
    assert all(text.endswith(f"rev {revisions - 1}") for _, _, text, _ in rows)
    assert store.dropped_partials == 0


async def test_a_full_queue_drops_new_partials_never_finals(db_path: Path) -> None:
    async with await TranscriptStore.open(db_path, max_pending_partials=5) as store:
        await store.add_call(call())
        await store.add_leg(leg())
        for seq in range(10):  # no await: the writer cannot drain meanwhile
            store.put_segment(segment(f"partial {seq}", seq=seq))
        store.put_segment(segment("partial 0 newer", seq=0))  # a queued key: coalesced
        for seq in range(100, 130):
            store.put_segment(segment(f"final {seq}", seq=seq, final=True))
        for n in range(30):
            store.put_gap(Gap(CallId("call-1"), LegId("leg-a"), n * 1000, 80, "overflow"))
        assert store.dropped_partials == 5
        await store.flush()
        transcript = await store.get_call("call-1")
    assert transcript is not None
    partials = {s.seq: s.text for s in transcript.segments if not s.final}
    assert partials == {
        0: "partial 0 newer",
        1: "partial 1",
        2: "partial 2",
        3: "partial 3",
        4: "partial 4",
    }
    assert len([s for s in transcript.segments if s.final]) == 30
    assert len(transcript.gaps) == 30


# -- awaited operations and bad items -------------------------------------------------------------


async def test_unknown_ids_fail_their_caller_not_the_batch(
    one_leg: TranscriptStore, peek: sqlite3.Connection
) -> None:
    store = one_leg
    store.put_segment(segment("kept", seq=1, final=True))
    store.put_segment(segment("orphan", seq=1, final=True, leg_id="no-such-leg"))
    results = await asyncio.gather(
        store.add_leg(leg("leg-x", call_id="no-such-call")),
        store.end_leg("no-such-leg", ended_at_ms=1, duration_ms=1),
        store.end_call("no-such-call", ended_at_ms=1, cause="bye"),
        store.add_leg(leg("leg-b")),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [StorageError, StorageError, StorageError, type(None)]
    assert "no-such-call" in str(results[0])
    assert _segments(peek) == [("leg-a", 1, "kept", 1)]
    assert store.rejected == 1
    with pytest.raises(StorageError, match="leg leg-a"):
        await store.add_leg(leg("leg-a", call_id="call-2"))  # a leg never moves to another call


async def test_a_locked_database_is_retried(db_path: Path) -> None:
    async with await TranscriptStore.open(db_path, busy_timeout_ms=50) as store:
        await store.add_call(call())
        await store.add_leg(leg())
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            store.put_segment(segment("waits for the lock", final=True))
            await asyncio.sleep(0.5)  # several busy timeouts
            other.execute("ROLLBACK")
        finally:
            other.close()
        await asyncio.wait_for(store.flush(), timeout=10)
        transcript = await store.get_call("call-1")
    assert transcript is not None
    assert [s.text for s in transcript.segments] == ["waits for the lock"]


async def test_a_broken_database_stops_the_writer_loudly(db_path: Path) -> None:
    store = await TranscriptStore.open(db_path)
    await store.add_call(call())
    await store.add_leg(leg())
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("DROP TABLE words")  # not retryable: "no such table"
    other.close()
    store.put_segment(segment("cannot be written", final=True))
    with pytest.raises(StorageError, match="no such table") as info:
        await asyncio.wait_for(store.flush(), timeout=5)
    assert str(db_path) in str(info.value)
    with pytest.raises(StorageError, match="stopped"):
        store.put_segment(segment("later", seq=1, final=True))
    with pytest.raises(StorageError, match="no such table"):
        await store.close()
    await store.close()  # closed anyway; a second close is quiet
