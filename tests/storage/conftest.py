"""Fixtures and value factories for the storage tests: real SQLite files under ``tmp_path``."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.core.types import (
    CallId,
    CallInfo,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    Segment,
    Word,
)
from storage import TranscriptStore


def call(
    call_id: str = "call-1", started_at_ms: int = 1_700_000_000_000, title: str = "t"
) -> CallInfo:
    return CallInfo(CallId(call_id), LegSource.SIP, started_at_ms, title)


def leg(
    leg_id: str = "leg-a",
    call_id: str = "call-1",
    started_at_ms: int = 1_700_000_000_000,
    role: LegRole = LegRole.CALLER,
) -> LegInfo:
    return LegInfo(
        CallId(call_id),
        LegId(leg_id),
        role,
        f"label {leg_id}",
        "pcmu/8000",
        LegSource.SIP,
        started_at_ms,
    )


def segment(
    text: str,
    *,
    seq: int = 0,
    final: bool = False,
    leg_id: str = "leg-a",
    call_id: str = "call-1",
    start_ms: int = 0,
) -> Segment:
    """A segment whose words are its text's words, 100 ms each from ``start_ms``."""
    words = tuple(
        Word(w, start_ms + 100 * i, start_ms + 100 * (i + 1)) for i, w in enumerate(text.split())
    )
    end_ms = words[-1].end_ms if words else start_ms
    return Segment(CallId(call_id), LegId(leg_id), seq, start_ms, end_ms, text, final, words)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "transcripts.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[TranscriptStore]:
    s = await TranscriptStore.open(db_path)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def one_leg(store: TranscriptStore) -> TranscriptStore:
    """The store with call ``call-1`` and its leg ``leg-a``."""
    await store.add_call(call())
    await store.add_leg(leg())
    return store


@pytest.fixture
def peek(store: TranscriptStore) -> Iterator[sqlite3.Connection]:
    """A separate, plain sqlite3 connection to the open store's file (another process's view)."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
