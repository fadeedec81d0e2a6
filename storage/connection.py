"""Opening the SQLite file the way the store needs it, and turning sqlite3 errors into StorageError.

Every connection gets ``foreign_keys=ON`` and a ``busy_timeout``; the writer's connection also
switches the file to WAL and ``synchronous=NORMAL``, the reader's is ``query_only``.  Connections
are in autocommit mode (``isolation_level=None``): the store writes ``BEGIN``/``COMMIT`` itself.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import aiosqlite

from bridge.errors import StorageError

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5_000

# Primary result code (https://www.sqlite.org/rescode.html) -> (retryable, what to do about it).
_ACTIONS: dict[int, tuple[bool, str]] = {
    sqlite3.SQLITE_BUSY: (
        True,
        "another connection held its lock past the busy timeout: stop other programs writing "
        "this database",
    ),
    sqlite3.SQLITE_LOCKED: (True, "the database is locked: stop other programs writing it"),
    sqlite3.SQLITE_FULL: (True, "the disk is full: free space on it; writes are retried"),
    sqlite3.SQLITE_IOERR: (True, "a disk I/O error: check the disk and the filesystem"),
    sqlite3.SQLITE_READONLY: (
        False,
        "the database is read-only: make the file, its -wal and -shm files and their directory "
        "writable by this user",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        False,
        "the file cannot be opened: check that the directory exists and is writable",
    ),
    sqlite3.SQLITE_PERM: (False, "permission denied: check the file's owner and mode"),
    sqlite3.SQLITE_CORRUPT: (
        False,
        "the database is corrupt: move it aside (keep it for recovery) and start a new one",
    ),
    sqlite3.SQLITE_NOTADB: (
        False,
        "the file is not an SQLite database: point the bridge at a different path",
    ),
    sqlite3.SQLITE_CONSTRAINT: (False, "a constraint failed: a bug in the bridge"),
}


def storage_error(exc: sqlite3.Error, path: Path, doing: str) -> StorageError:
    """A StorageError for ``exc`` that names the database, what failed and what to do."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    retryable, action = (False, "see the SQLite error")
    if code is not None:
        retryable, action = _ACTIONS.get(code & 0xFF, (retryable, action))
    return StorageError(f"{doing} {path} failed: {exc} ({action})", retryable=retryable)


async def connect(path: Path, *, busy_timeout_ms: int, writer: bool) -> aiosqlite.Connection:
    """Open ``path`` (created if missing) for the writer or for readers; raise StorageError."""
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise storage_error(exc, path, "opening") from exc
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if writer:
            await _configure_writer(conn, path)
        else:
            await conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        await close_quietly(conn, path)
        raise storage_error(exc, path, "opening") from exc
    except BaseException:
        await close_quietly(conn, path)
        raise
    return conn


async def _configure_writer(conn: aiosqlite.Connection, path: Path) -> None:
    # WAL lets readers run while the writer commits (https://www.sqlite.org/wal.html).  The mode is
    # stored in the file, so every later connection uses it too.
    async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
        row = await cursor.fetchone()
    mode = str(row[0]).lower() if row is not None else "?"
    if mode != "wal":
        raise StorageError(
            f"opening {path} failed: SQLite refused WAL journal mode (got {mode!r}); "
            "put the database on a local filesystem",
            retryable=False,
        )
    # Durability trade-off.  In WAL mode with synchronous=NORMAL a COMMIT appends the transaction
    # to the -wal file with write() but does not fsync it; the WAL is fsynced at checkpoints.
    # A committed transaction therefore survives a crash or SIGKILL of this process (the bytes are
    # in the OS page cache and the next open replays the WAL) but the last commits since the
    # previous checkpoint may be lost -- never corrupted -- on power loss or an OS crash
    # (https://www.sqlite.org/pragma.html#pragma_synchronous).  FULL would fsync every commit,
    # i.e. several times a second under load, for text whose audio is gone anyway.
    await conn.execute("PRAGMA synchronous = NORMAL")


async def close_quietly(conn: aiosqlite.Connection, path: Path) -> None:
    """Close ``conn``, logging (not raising) an SQLite error."""
    try:
        await conn.close()
    except sqlite3.Error as exc:
        logger.warning("closing %s failed: %s", path, exc)
