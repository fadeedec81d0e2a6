"""Reading the transcript store: listing, search, whole transcripts, id prefixes.

Reads use their own ``query_only`` connection: in WAL mode readers see the last commit and never
wait for the writer (:mod:`storage.writer`).  One read transaction runs at a time on it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from bridge.core.types import (
    CallId,
    Gap,
    LegEvent,
    LegId,
    LegRole,
    LegSource,
    Segment,
    Timing,
    Word,
)
from bridge.errors import StorageError

from .connection import storage_error
from .records import CallPage, CallRecord, CallTranscript, LegRecord

_CALL_COLUMNS = """
    c.call_id, c.source, c.title, c.started_at_ms, c.ended_at_ms, c.end_cause,
    (SELECT count(*) FROM legs AS l WHERE l.call_id = c.call_id) AS leg_count, c.agent,
    (SELECT max(l.duration_ms) FROM legs AS l WHERE l.call_id = c.call_id) AS audio_ms
"""


def fts_query(text: str) -> str:
    """User words as an FTS5 query: every word must occur (each quoted, so no FTS syntax)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


class CallReader:
    """The read half of :class:`~storage.TranscriptStore`, on the store's read connection.

    Methods raise :class:`~bridge.errors.StorageError` when SQLite fails.
    """

    def __init__(self, path: Path, read_conn: aiosqlite.Connection) -> None:
        self._path = path
        self._read_conn = read_conn
        self._read_lock = asyncio.Lock()  # one read transaction at a time on the read connection

    async def list_calls(self, *, limit: int = 50, offset: int = 0) -> list[CallRecord]:
        """Calls, newest first."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        rows = await self._read(
            f"SELECT {_CALL_COLUMNS} FROM calls AS c "
            "ORDER BY c.started_at_ms DESC, c.call_id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_call_record(row) for row in rows]

    async def search_calls(
        self,
        *,
        active: bool | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        text: str | None = None,
        who: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> CallPage:
        """Calls newest first, filtered; ``total`` counts every match (for pagination).

        ``active``: only active (True) or ended (False) calls.  ``since_ms``/``until_ms``: calls
        that started in ``[since_ms, until_ms)``.  ``text``: final segment text contains every
        word (FTS5).  ``who``: the title or a leg label contains it (participants, numbers).
        ``agent``: only that agent's calls.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        where: list[str] = []
        params: list[Any] = []
        if active is not None:
            where.append("c.ended_at_ms IS NULL" if active else "c.ended_at_ms IS NOT NULL")
        if since_ms is not None:
            where.append("c.started_at_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append("c.started_at_ms < ?")
            params.append(until_ms)
        if agent is not None:
            where.append("c.agent = ?")
            params.append(agent)
        if who:
            pattern = "%" + who.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM legs AS l2"
                " WHERE l2.call_id = c.call_id AND l2.label LIKE ? ESCAPE '\\'))"
            )
            params += [pattern, pattern]
        if text and text.split():
            where.append(
                "c.call_id IN (SELECT t.call_id FROM segments_fts JOIN segment_text AS t"
                " ON t.id = segments_fts.rowid WHERE segments_fts MATCH ?)"
            )
            params.append(fts_query(text))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = await self._read(f"SELECT count(*) FROM calls AS c{clause}", tuple(params))
        rows = await self._read(
            f"SELECT {_CALL_COLUMNS} FROM calls AS c{clause}"
            " ORDER BY c.started_at_ms DESC, c.call_id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return CallPage([_call_record(row) for row in rows], int(total[0][0]))

    async def get_call(self, call_id: str) -> CallTranscript | None:
        """Everything stored about ``call_id`` (one consistent snapshot), or None if unknown."""
        async with self._read_lock:
            try:
                await self._read_conn.execute("BEGIN")
                try:
                    return await self._read_call(call_id)
                finally:
                    await self._read_conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise storage_error(exc, self._path, "reading") from exc

    async def find_call_id(self, prefix: str) -> str | None:
        """The call id that is ``prefix`` or starts with it; None if none does.

        An exact match wins; raises StorageError if several ids start with ``prefix``.
        """
        if not prefix:
            raise StorageError("a call id prefix must not be empty", retryable=False)
        # Ids starting with the prefix sort right at or after it, in one run.
        rows = await self._read(
            "SELECT call_id FROM calls WHERE call_id >= ? ORDER BY call_id LIMIT 6", (prefix,)
        )
        ids = [str(row[0]) for row in rows]
        if ids and ids[0] == prefix:
            return prefix
        matches = [i for i in ids if i.startswith(prefix)]
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise StorageError(
                f"call id prefix {prefix!r} is ambiguous in {self._path}: it matches {shown}; "
                "type more characters",
                retryable=False,
            )
        return matches[0] if matches else None

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        """The rows of one query (its own read transaction)."""
        async with self._read_lock:
            try:
                return list(await self._read_conn.execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                raise storage_error(exc, self._path, "reading") from exc

    async def _read_call(self, call_id: str) -> CallTranscript | None:
        conn = self._read_conn
        calls = list(
            await conn.execute_fetchall(
                f"SELECT {_CALL_COLUMNS} FROM calls AS c WHERE c.call_id = ?", (call_id,)
            )
        )
        if not calls:
            return None
        legs = await conn.execute_fetchall(
            "SELECT call_id, leg_id, role, label, codec, source, started_at_ms, ended_at_ms,"
            " duration_ms FROM legs WHERE call_id = ? ORDER BY started_at_ms, rowid",
            (call_id,),
        )
        words = await conn.execute_fetchall(
            "SELECT w.leg_id, w.seq, w.text, w.start_ms, w.end_ms, w.timing FROM words AS w"
            " WHERE w.leg_id IN (SELECT leg_id FROM legs WHERE call_id = ?)"
            " ORDER BY w.leg_id, w.seq, w.idx",
            (call_id,),
        )
        segments = await conn.execute_fetchall(
            "SELECT call_id, leg_id, seq, start_ms, end_ms, text, final, timing FROM segments"
            " WHERE call_id = ? ORDER BY start_ms, leg_id, seq",
            (call_id,),
        )
        gaps = await conn.execute_fetchall(
            "SELECT call_id, leg_id, start_ms, duration_ms, reason FROM gaps"
            " WHERE call_id = ? ORDER BY start_ms, leg_id, id",
            (call_id,),
        )
        events = await conn.execute_fetchall(
            "SELECT call_id, leg_id, at_ms, kind, detail FROM events WHERE call_id = ? ORDER BY id",
            (call_id,),
        )
        return CallTranscript(
            call=_call_record(calls[0]),
            legs=tuple(_leg_record(row) for row in legs),
            segments=_segments(segments, words),
            gaps=tuple(
                Gap(CallId(r[0]), LegId(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in gaps
            ),
            events=tuple(
                LegEvent(CallId(r[0]), None if r[1] is None else LegId(r[1]), int(r[2]), r[3], r[4])
                for r in events
            ),
        )


def _call_record(row: sqlite3.Row) -> CallRecord:
    started_at_ms = int(row[3])
    ended_at_ms = None if row[4] is None else int(row[4])
    return CallRecord(
        call_id=CallId(row[0]),
        source=LegSource(row[1]),
        title=str(row[2]),
        started_at_ms=started_at_ms,
        ended_at_ms=ended_at_ms,
        end_cause=row[5],
        leg_count=int(row[6]),
        duration_ms=None if ended_at_ms is None else ended_at_ms - started_at_ms,
        active=ended_at_ms is None,
        agent=row[7],
        audio_ms=None if row[8] is None else int(row[8]),
    )


def _leg_record(row: sqlite3.Row) -> LegRecord:
    return LegRecord(
        call_id=CallId(row[0]),
        leg_id=LegId(row[1]),
        role=LegRole(row[2]),
        label=str(row[3]),
        codec=str(row[4]),
        source=LegSource(row[5]),
        started_at_ms=int(row[6]),
        ended_at_ms=None if row[7] is None else int(row[7]),
        duration_ms=None if row[8] is None else int(row[8]),
    )


def _segments(rows: Iterable[sqlite3.Row], word_rows: Iterable[sqlite3.Row]) -> tuple[Segment, ...]:
    words: dict[tuple[str, int], list[Word]] = {}
    for w in word_rows:
        words.setdefault((w[0], w[1]), []).append(
            Word(str(w[2]), int(w[3]), int(w[4]), Timing(w[5]))
        )
    return tuple(
        Segment(
            call_id=CallId(r[0]),
            leg_id=LegId(r[1]),
            seq=int(r[2]),
            start_ms=int(r[3]),
            end_ms=int(r[4]),
            text=str(r[5]),
            final=bool(r[6]),
            words=tuple(words.get((r[1], r[2]), ())),
            timing=Timing(r[7]),
        )
        for r in rows
    )
