"""Versioned migrations on real SQLite files: from empty, reopen, newer or foreign databases."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from bridge.core.types import Timing
from bridge.errors import StorageError
from storage import TranscriptStore, latest_version
from storage.migrate import load_migrations, split_statements

from .conftest import call


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [(str(n), str(s)) for n, s in rows]


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_init.sql"
    assert latest_version() == migrations[-1].version


def test_split_statements_ignores_comments_and_keeps_semicolons_in_strings() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT ';');\n\n-- end\n"
    assert split_statements(script) == (
        "-- a comment; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT ';');",
    )
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE t (x")


async def test_migrates_an_empty_database(db_path: Path) -> None:
    async with await TranscriptStore.open(db_path):
        pass
    assert _user_version(db_path) == latest_version()
    names = {name for name, _ in _schema(db_path)}
    assert {"calls", "legs", "segments", "words", "gaps", "events"} <= names
    assert {"calls_by_start", "segments_by_call"} <= names
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_reopening_is_a_no_op(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with await TranscriptStore.open(db_path) as store:
        await store.add_call(call())
    schema = _schema(db_path)
    caplog.set_level(logging.INFO, logger="storage")
    async with await TranscriptStore.open(db_path) as store:
        assert [c.call_id for c in await store.list_calls()] == ["call-1"]
    assert _schema(db_path) == schema
    assert _user_version(db_path) == latest_version()
    assert not [r for r in caplog.records if "applying migration" in r.getMessage()]


async def test_refuses_a_database_from_a_newer_bridge(db_path: Path) -> None:
    async with await TranscriptStore.open(db_path):
        pass
    newer = latest_version() + 1
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(StorageError) as info:
        await TranscriptStore.open(db_path)
    message = str(info.value)
    assert str(db_path) in message
    assert f"schema version {newer}" in message
    assert f"up to {latest_version()}" in message
    assert not info.value.retryable
    assert _user_version(db_path) == newer  # untouched


async def test_refuses_someone_elses_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE inventory (item TEXT)")
    conn.close()
    with pytest.raises(StorageError, match="not a transcript store") as info:
        await TranscriptStore.open(db_path)
    assert str(db_path) in str(info.value)
    assert [name for name, _ in _schema(db_path)] == ["inventory"]  # rolled back


def _database_at(path: Path, version: int) -> None:
    """A store file as a bridge of schema ``version`` left it: migrations 1..version applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for migration in load_migrations()[:version]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.close()


async def test_a_version_3_store_reads_its_old_rows_as_step_clock(db_path: Path) -> None:
    _database_at(db_path, 3)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("INSERT INTO calls (call_id, source, started_at_ms) VALUES ('c', 'sip', 0)")
        conn.execute(
            "INSERT INTO legs (leg_id, call_id, role, source, started_at_ms)"
            " VALUES ('l', 'c', 'caller', 'sip', 0)"
        )
        conn.execute(
            "INSERT INTO segments (leg_id, seq, call_id, start_ms, end_ms, text, final,"
            " updated_at_ms) VALUES ('l', 0, 'c', 80, 400, 'old words', 1, 0)"
        )
        conn.execute(
            "INSERT INTO words (leg_id, seq, idx, text, start_ms, end_ms)"
            " VALUES ('l', 0, 0, 'old', 80, 240), ('l', 0, 1, 'words', 240, 400)"
        )
    finally:
        conn.close()
    assert _user_version(db_path) == 3

    async with await TranscriptStore.open(db_path) as store:
        transcript = await store.get_call("c")
    assert _user_version(db_path) == latest_version() >= 4
    assert transcript is not None
    (segment,) = transcript.segments
    assert segment.text == "old words" and segment.timing is Timing.STEP_CLOCK
    assert [(w.text, w.timing) for w in segment.words] == [
        ("old", Timing.STEP_CLOCK),
        ("words", Timing.STEP_CLOCK),
    ]
