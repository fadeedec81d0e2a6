"""One batch of queued items into SQLite: one transaction on the write connection.

Within a transaction the items are written in the batch's order, runs of the same kind with one
``executemany`` each.  An item SQLite refuses (an unknown call or leg id) rolls the batch back;
it is then written item by item (a savepoint each), so the refused item is dropped alone with an
error log, or fails its awaiting caller, and the rest of the batch commits.  Any other SQLite
error rolls back and raises :class:`~bridge.errors.StorageError` (``retryable`` says whether the
writer should try the batch again).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import aiosqlite

from bridge.core.types import Gap, LegEvent, Segment
from bridge.errors import StorageError

from .connection import storage_error
from .pending import Item, Op, describe
from .statements import (
    DELETE_WORDS,
    INSERT_EVENT,
    INSERT_GAP,
    INSERT_WORD,
    UPSERT_SEGMENT,
    event_params,
    gap_params,
    segment_params,
)

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Transactions:
    """Commits batches on the write connection and counts what happened."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        #: Transactions committed so far.
        self.commits = 0
        #: Segments, gaps and events SQLite refused (unknown call or leg id), logged and dropped.
        self.rejected = 0

    async def commit(self, batch: list[Item]) -> None:
        """Write ``batch`` in one transaction, then settle the awaiting callers' futures."""
        conn = self._conn
        for item in batch:
            if isinstance(item, Op):
                item.error = None  # from an earlier, rolled back attempt
        try:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await self._apply(batch)
            except sqlite3.IntegrityError as exc:
                # An unknown call or leg id: redo the batch item by item so one bad item does
                # not cost the others their commit.
                logger.debug("%s: batch refused (%s); writing item by item", self._path, exc)
                await conn.execute("ROLLBACK")
                await conn.execute("BEGIN IMMEDIATE")
                await self._apply_each(batch)
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            await self._rollback_quietly()
            raise storage_error(exc, self._path, "writing transcripts to") from exc
        except BaseException:
            await self._rollback_quietly()
            raise
        self.commits += 1
        for item in batch:
            if isinstance(item, Op) and not item.future.done():
                if item.error is None:
                    item.future.set_result(None)
                else:
                    item.future.set_exception(item.error)

    async def _rollback_quietly(self) -> None:
        if self._conn.in_transaction:
            try:
                await self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                logger.warning("rolling back on %s failed: %s", self._path, exc)

    async def _apply_each(self, batch: list[Item]) -> None:
        for item in batch:
            await self._conn.execute("SAVEPOINT item")
            try:
                await self._apply([item])
            except sqlite3.IntegrityError as exc:
                await self._conn.execute("ROLLBACK TO item")
                if isinstance(item, Op):
                    item.error = StorageError(
                        f"{item.what}: refused by {self._path}: {exc}", retryable=False
                    )
                else:
                    self.rejected += 1
                    logger.error(
                        "%s: dropping %s: %s (was its call or leg added?)",
                        self._path,
                        describe(item),
                        exc,
                    )
            await self._conn.execute("RELEASE item")

    async def _apply(self, items: list[Item]) -> None:
        """Write ``items`` in order, runs of the same kind with one ``executemany`` each."""
        now_ms = _now_ms()
        start = 0
        while start < len(items):
            kind = type(items[start])
            end = start
            while end < len(items) and type(items[end]) is kind:
                end += 1
            run = items[start:end]
            if kind is Op:
                for op in run:
                    assert isinstance(op, Op)
                    await self._apply_op(op)
            elif kind is Segment:
                await self._write_segments([s for s in run if isinstance(s, Segment)], now_ms)
            elif kind is Gap:
                await self._conn.executemany(
                    INSERT_GAP, [gap_params(g) for g in run if isinstance(g, Gap)]
                )
            else:
                await self._conn.executemany(
                    INSERT_EVENT, [event_params(e) for e in run if isinstance(e, LegEvent)]
                )
            start = end

    async def _apply_op(self, op: Op) -> None:
        if op.sql is None:
            return
        async with self._conn.execute(op.sql, op.params) as cursor:
            changed = cursor.rowcount
        if op.must_change and changed == 0:
            op.error = StorageError(f"{op.what}: {self._path} changed no row", retryable=False)

    async def _write_segments(self, segments: list[Segment], now_ms: int) -> None:
        rows, keys, words = segment_params(segments, now_ms)
        await self._conn.executemany(UPSERT_SEGMENT, rows)
        await self._conn.executemany(DELETE_WORDS, keys)
        if words:
            await self._conn.executemany(INSERT_WORD, words)
