"""Versioned schema migrations.

The files ``storage/migrations/NNNN_name.sql`` (package data) are numbered 1, 2, 3, ... without
holes.  ``PRAGMA user_version`` holds the number of the last one applied; each pending file runs
in one ``BEGIN IMMEDIATE`` transaction together with the version bump, so a crash leaves the
database at the old version or the new one, never between.  A database whose version is newer
than the code is refused, as is a file that already holds someone else's tables.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiosqlite

from bridge.errors import StorageError

from .connection import storage_error

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its number, file name and SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """The statements of an SQL script, split where SQLite's tokenizer sees a complete one."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if _has_code(statement):
                statements.append(statement)
            pending = ""
    if _has_code(pending):
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending.strip()!r}")
    return tuple(statements)


def _has_code(sql: str) -> bool:
    """Whether ``sql`` holds more than ``--`` comments and blank space."""
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


@functools.cache
def load_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with the package, in order; raise if the numbering has holes."""
    folder = resources.files(__name__.rpartition(".")[0]).joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        found[version] = Migration(
            version, entry.name, split_statements(entry.read_text(encoding="utf-8"))
        )
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"storage migrations must be numbered 1..N without holes: {versions}")
    return tuple(found[v] for v in versions)


def latest_version() -> int:
    """The schema version this code writes."""
    return load_migrations()[-1].version


async def migrate(conn: aiosqlite.Connection, path: Path) -> tuple[int, int]:
    """Bring the database on ``conn`` to :func:`latest_version`; return (old, new) versions."""
    migrations = load_migrations()
    latest = migrations[-1].version
    try:
        version = await _user_version(conn)
        _check_not_newer(version, latest, path)
        if version == latest:
            return version, version  # the common case: no write lock taken
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = await _user_version(conn)
            _check_not_newer(version, latest, path)
            if version == 0 and await _has_foreign_objects(conn):
                raise StorageError(
                    f"{path} is an SQLite database but not a transcript store (it has tables and "
                    "no schema version): point the bridge at a different path",
                    retryable=False,
                )
            for migration in migrations[version:]:
                logger.info("applying migration %s to %s", migration.name, path)
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {migration.version}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise storage_error(exc, path, "migrating") from exc
    return version, latest


def _check_not_newer(version: int, latest: int, path: Path) -> None:
    if version > latest:
        raise StorageError(
            f"{path} has schema version {version} but this bridge knows versions up to {latest}: "
            "it was written by a newer bridge; upgrade the bridge or use a different database",
            retryable=False,
        )


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def _has_foreign_objects(conn: aiosqlite.Connection) -> bool:
    rows = await conn.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 1"
    )
    return len(list(rows)) > 0
