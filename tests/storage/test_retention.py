"""Retention on a real SQLite file: what is due, and the loop that deletes it until stopped."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from storage import TranscriptStore, retention_loop
from storage.retention import retention_cutoff_ms

from .conftest import call

DAY_MS = 86_400_000


def test_the_cutoff_is_days_before_now() -> None:
    assert retention_cutoff_ms(90, now_ms=100 * DAY_MS) == 10 * DAY_MS
    assert retention_cutoff_ms(0.5, now_ms=DAY_MS) == DAY_MS // 2
    assert retention_cutoff_ms(1 / 86_400, now_ms=5_000) == 4_000  # one second


@pytest.mark.parametrize("days", [0, -1, math.nan])
def test_no_cutoff_for_days_that_keep_everything(days: float) -> None:
    with pytest.raises(ValueError, match="0 keeps every call"):
        retention_cutoff_ms(days, now_ms=DAY_MS)


async def _ended(store: TranscriptStore, call_id: str, ended_at_ms: int) -> None:
    await store.add_call(call(call_id, started_at_ms=ended_at_ms - 1000))
    await store.end_call(call_id, ended_at_ms=ended_at_ms, cause="bye")


async def _ids(store: TranscriptStore) -> set[str]:
    return {c.call_id for c in await store.list_calls()}


async def _ids_once_gone(store: TranscriptStore, call_id: str, *, within_s: float) -> set[str]:
    """The stored call ids once ``call_id`` is not among them, or when ``within_s`` passed."""
    deadline = time.monotonic() + within_s
    while True:
        ids = await _ids(store)
        if call_id not in ids or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.02)


async def test_the_loop_deletes_what_is_due_now_and_later_until_stopped(
    store: TranscriptStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storage.retention")
    now_ms = time.time_ns() // 1_000_000
    days = 3 / 86_400  # three seconds
    await _ended(store, "old", now_ms - 60_000)
    await _ended(store, "soon", now_ms - 1_000)  # due two seconds from now
    await _ended(store, "fresh", now_ms + 60_000)
    await store.add_call(call("active", started_at_ms=now_ms - 3_600_000))  # never due
    stop = asyncio.Event()
    loop = asyncio.create_task(retention_loop(store, days, stop, interval_s=0.1))
    try:
        at_start = await _ids_once_gone(store, "old", within_s=1)
        assert at_start == {"soon", "fresh", "active"}
        later = await _ids_once_gone(store, "soon", within_s=5)
        assert later == {"fresh", "active"}  # on a later round
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=1)  # stopping ends it, not the interval
    messages = [r.getMessage() for r in caplog.records if r.name == "storage.retention"]
    assert messages == [
        f"retention: deleted 1 call(s) that ended over {days} days ago",
        f"retention: deleted 1 call(s) that ended over {days} days ago",
    ]


async def test_a_stopped_loop_waits_no_interval(store: TranscriptStore) -> None:
    stop = asyncio.Event()
    loop = asyncio.create_task(retention_loop(store, 90, stop))  # the hourly default
    await asyncio.sleep(0.1)
    assert not loop.done()
    stop.set()
    await asyncio.wait_for(loop, timeout=1)


async def test_the_loop_refuses_days_that_keep_everything(store: TranscriptStore) -> None:
    with pytest.raises(ValueError, match="0 keeps every call"):
        await retention_loop(store, 0, asyncio.Event())
