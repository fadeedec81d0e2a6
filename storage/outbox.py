"""The webhook outbox: events stored until the receiver took them (table ``webhook_outbox``).

:mod:`bridge.webhooks` puts every event it will POST here first, then delivers the rows in
``id`` order per call and deletes each one the receiver accepted.  The rows survive a restart;
the table is bounded (``max_rows``: the oldest rows are dropped to make room, and the caller is
told how many).  The outbox has its own connection to the transcript store's SQLite file (WAL:
its short writes interleave with the store's writer under ``busy_timeout``), or, without a file,
an in-memory database with the same table (tests, a bridge without a store).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bridge.errors import StorageError

from .connection import DEFAULT_BUSY_TIMEOUT_MS, close_quietly, connect, storage_error
from .migrate import load_migrations, migrate

OUTBOX_MIGRATION = "0003_webhook_outbox.sql"
_COLUMNS = "id, call_id, event_type, body, created_at_ms, next_at_ms, attempts, last_error"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored event."""

    id: int
    call_id: str
    event_type: str
    body: bytes
    created_at_ms: int
    next_at_ms: int
    attempts: int
    last_error: str | None


class WebhookOutbox:
    """Open with :meth:`open`; every method raises :class:`~bridge.errors.StorageError`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None, depth: int, max_rows: int):
        """Use :meth:`open`."""
        self._conn = conn
        self._path = path
        self._where = path or Path(":memory:")
        self.depth = depth  # rows stored now (kept in step by this object's own writes)
        self.max_rows = max_rows

    @classmethod
    async def open(cls, path: Path | None, *, max_rows: int = 100_000) -> WebhookOutbox:
        """The outbox in the store at ``path`` (migrated if needed), or in memory for None."""
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if path is None:
            conn = await aiosqlite.connect(":memory:", isolation_level=None)
            try:
                (migration,) = (m for m in load_migrations() if m.name == OUTBOX_MIGRATION)
                for statement in migration.statements:
                    await conn.execute(statement)
            except BaseException:
                await conn.close()
                raise
        else:
            conn = await connect(path, busy_timeout_ms=DEFAULT_BUSY_TIMEOUT_MS, writer=True)
            try:
                await migrate(conn, path)
            except BaseException:
                await close_quietly(conn, path)
                raise
        outbox = cls(conn, path, 0, max_rows)
        try:
            outbox.depth = int((await outbox._fetch("SELECT count(*) FROM webhook_outbox"))[0][0])
        except BaseException:
            await outbox.close()
            raise
        return outbox

    async def close(self) -> None:
        await close_quietly(self._conn, self._where)

    async def put(
        self, call_id: str, event_type: str, body: bytes, *, now_ms: int
    ) -> tuple[int, int]:
        """Store one event, due now; return (its id, how many oldest rows were dropped)."""
        dropped = 0
        if self.depth >= self.max_rows:
            dropped = await self._execute(
                "DELETE FROM webhook_outbox WHERE id IN"
                " (SELECT id FROM webhook_outbox ORDER BY id LIMIT ?)",
                (self.depth - self.max_rows + 1,),
            )
            self.depth -= dropped
        cursor_id = await self._insert(
            "INSERT INTO webhook_outbox (call_id, event_type, body, created_at_ms, next_at_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (call_id, event_type, body, now_ms, now_ms),
        )
        self.depth += 1
        return cursor_id, dropped

    async def heads(self, *, limit: int = 100) -> list[OutboxItem]:
        """The oldest stored event of each call (the only one of it that may go next), by id."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM webhook_outbox WHERE id IN"
            " (SELECT min(id) FROM webhook_outbox GROUP BY call_id) ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            OutboxItem(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                bytes(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]

    async def remove(self, item_id: int) -> None:
        """The receiver took it (or it is given up)."""
        self.depth -= await self._execute("DELETE FROM webhook_outbox WHERE id = ?", (item_id,))

    async def postpone(self, item_id: int, *, next_at_ms: int, error: str) -> None:
        """A failed try: count it, keep why, try again at ``next_at_ms``."""
        await self._execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at_ms = ?, last_error = ?"
            " WHERE id = ?",
            (next_at_ms, error[:500], item_id),
        )

    async def expire(self, *, created_before_ms: int) -> list[OutboxItem]:
        """Remove and return (without bodies) the events stored before ``created_before_ms``."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM webhook_outbox WHERE created_at_ms < ? ORDER BY id",
            (created_before_ms,),
        )
        if rows:
            self.depth -= await self._execute(
                "DELETE FROM webhook_outbox WHERE created_at_ms < ?", (created_before_ms,)
            )
        return [
            OutboxItem(int(r[0]), str(r[1]), str(r[2]), b"", int(r[4]), int(r[5]), int(r[6]), r[7])
            for r in rows
        ]

    # -- SQL -------------------------------------------------------------------------------------

    async def _fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._error(exc, "reading the webhook outbox of") from exc

    async def _execute(self, sql: str, params: tuple[object, ...]) -> int:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return max(cursor.rowcount, 0)
        except sqlite3.Error as exc:
            raise self._error(exc, "writing the webhook outbox of") from exc

    async def _insert(self, sql: str, params: tuple[object, ...]) -> int:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            raise self._error(exc, "writing the webhook outbox of") from exc

    def _error(self, exc: sqlite3.Error, doing: str) -> StorageError:
        return storage_error(exc, self._where, doing)
