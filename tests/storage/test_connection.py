"""SQLite failures become StorageErrors that name the file and what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.errors import StorageError
from storage import TranscriptStore
from storage.connection import storage_error


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not an SQLite file\n" * 200)
    with pytest.raises(StorageError) as info:
        await TranscriptStore.open(path)
    assert str(path) in str(info.value)
    assert "not an SQLite database" in str(info.value)
    assert not info.value.retryable


async def test_a_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    path = tmp_path / "plain-file" / "transcripts.db"
    with pytest.raises(StorageError, match="cannot create the directory") as info:
        await TranscriptStore.open(path)
    assert str(path) in str(info.value)


def test_error_codes_map_to_actions(tmp_path: Path) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    error = storage_error(full, tmp_path / "t.db", "writing transcripts to")
    assert error.retryable
    assert "disk is full" in str(error) and str(tmp_path / "t.db") in str(error)

    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = sqlite3.SQLITE_READONLY_DBMOVED
    error = storage_error(readonly, tmp_path / "t.db", "writing transcripts to")
    assert not error.retryable
    assert "writable" in str(error)
