"""The transcript store: SQLite behind a small async interface (design.md §4).

Writes go through one :class:`~storage.writer.Writer` task on its own connection (batched; see
its docstring for the queue, overflow and commit rules).  Reads use a second, ``query_only``
connection: in WAL mode readers see the last commit and never wait for the writer.

Usage::

    async with await TranscriptStore.open("var/transcripts.db") as store:
        await store.add_call(call)
        await store.add_leg(leg)
        store.put_segment(segment)          # never blocks
        transcript = await store.get_call(call.call_id)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bridge.core.types import (
    CallId,
    CallInfo,
    Gap,
    LegEvent,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
    Segment,
    Word,
)
from bridge.errors import StorageError

from .connection import DEFAULT_BUSY_TIMEOUT_MS, close_quietly, connect, storage_error
from .migrate import migrate
from .writer import DEFAULT_COMMIT_INTERVAL_MS, DEFAULT_MAX_PENDING_PARTIALS, Writer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call as listed: no transcript.  ``duration_ms`` (wall clock, start to end) is ``None``
    while the call is active; ``audio_ms`` is its longest ended leg's audio (a file transcribed
    ``--fast`` has minutes of audio in seconds of wall clock), ``None`` before a leg ends."""

    call_id: CallId
    source: LegSource
    title: str
    started_at_ms: int
    ended_at_ms: int | None
    end_cause: str | None
    leg_count: int
    duration_ms: int | None
    active: bool
    agent: str | None = None  # the agent the call belongs to (schema 2); None: supervisors only
    audio_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadCall:
    """A call a dead process left active, as :meth:`TranscriptStore.end_dead_calls` ended it."""

    call_id: CallId
    ended_at_ms: int  # its last stored activity
    legs_closed: int
    untranscribed_ms: int  # audio stored as gaps (known only where the call said how long)


# A call-level event (leg_id NULL) whose detail ``duration_ms=N`` says how long the call's audio
# is (an uploaded file): if the process dies, the rest of each leg is stored as a gap.
MEDIA_DURATION_EVENT = "media.duration"


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of :meth:`TranscriptStore.search_calls`: the calls and how many match in all."""

    calls: list[CallRecord]
    total: int


@dataclass(frozen=True, slots=True)
class LegRecord:
    """A stored leg.  ``ended_at_ms`` and ``duration_ms`` are ``None`` while it is active."""

    call_id: CallId
    leg_id: LegId
    role: LegRole
    label: str
    codec: str
    source: LegSource
    started_at_ms: int
    ended_at_ms: int | None
    duration_ms: int | None

    @property
    def active(self) -> bool:
        return self.ended_at_ms is None


@dataclass(frozen=True, slots=True)
class CallTranscript:
    """Everything stored about one call.

    ``segments`` are ordered by start time, then leg id, then seq, each with its words; ``gaps``
    by start time, then leg id; ``events`` in the order they were recorded (their ``at_ms`` mixes
    leg clocks and the wall clock, so it cannot order them).
    """

    call: CallRecord
    legs: tuple[LegRecord, ...]
    segments: tuple[Segment, ...]
    gaps: tuple[Gap, ...]
    events: tuple[LegEvent, ...]


_CALL_COLUMNS = """
    c.call_id, c.source, c.title, c.started_at_ms, c.ended_at_ms, c.end_cause,
    (SELECT count(*) FROM legs AS l WHERE l.call_id = c.call_id) AS leg_count, c.agent,
    (SELECT max(l.duration_ms) FROM legs AS l WHERE l.call_id = c.call_id) AS audio_ms
"""


def fts_query(text: str) -> str:
    """User words as an FTS5 query: every word must occur (each quoted, so no FTS syntax)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


class TranscriptStore:
    """Calls, legs, segments with words, gaps and events in one SQLite file.

    Open with :meth:`open`; close with :meth:`close` or use ``async with``.  Methods raise
    :class:`~bridge.errors.StorageError` when SQLite fails; its message names the file and what to
    do, and ``retryable`` says whether trying again can help.
    """

    def __init__(
        self,
        path: Path,
        write_conn: aiosqlite.Connection,
        read_conn: aiosqlite.Connection,
        writer: Writer,
    ) -> None:
        """Use :meth:`open`."""
        self._path = path
        self._write_conn = write_conn
        self._read_conn = read_conn
        self._read_lock = asyncio.Lock()  # one read transaction at a time on the read connection
        self._writer = writer
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        max_pending_partials: int = DEFAULT_MAX_PENDING_PARTIALS,
        commit_interval_ms: int = DEFAULT_COMMIT_INTERVAL_MS,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> TranscriptStore:
        """Open (creating the file and its directory) and migrate the store, start its writer."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the directory for {path}: {exc} (choose a writable location)",
                retryable=False,
            ) from exc
        write_conn = await connect(path, busy_timeout_ms=busy_timeout_ms, writer=True)
        read_conn: aiosqlite.Connection | None = None
        try:
            old, new = await migrate(write_conn, path)
            read_conn = await connect(path, busy_timeout_ms=busy_timeout_ms, writer=False)
            writer = Writer(
                write_conn,
                path,
                max_pending_partials=max_pending_partials,
                commit_interval_ms=commit_interval_ms,
            )
            writer.start()
        except BaseException:
            for conn in (read_conn, write_conn):
                if conn is not None:
                    await close_quietly(conn, path)
            raise
        if old != new:
            logger.info("opened transcript store %s (schema %d, migrated from %d)", path, new, old)
        else:
            logger.info("opened transcript store %s (schema %d)", path, new)
        return cls(path, write_conn, read_conn, writer)

    async def close(self) -> None:
        """Commit everything queued, stop the writer and close the file (idempotent).

        Raises StorageError if the writer failed and queued writes were lost.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._writer.stop()
        finally:
            for conn in (self._read_conn, self._write_conn):
                await close_quietly(conn, self._path)
            logger.info(
                "closed transcript store %s (%d commits, %d partials dropped, %d items refused)",
                self._path,
                self._writer.commits,
                self._writer.dropped_partials,
                self._writer.rejected,
            )

    async def __aenter__(self) -> TranscriptStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- facts ------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def commits(self) -> int:
        """Write transactions committed since :meth:`open`."""
        return self._writer.commits

    @property
    def dropped_partials(self) -> int:
        """Partial revisions dropped because the partial queue was full."""
        return self._writer.dropped_partials

    @property
    def rejected(self) -> int:
        """Segments, gaps and events SQLite refused (unknown call or leg id); logged, dropped."""
        return self._writer.rejected

    @property
    def backlog(self) -> int:
        """Items queued and not yet committed; a growing backlog means the disk is too slow."""
        return self._writer.backlog

    # -- writes -----------------------------------------------------------------------------------

    def put_segment(self, segment: Segment) -> None:
        """Queue a segment revision; never blocks.  Finals are committed within ~one transaction;
        a partial may be coalesced with newer revisions or, when the queue is full, dropped."""
        self._writer.put_segment(segment)

    def put_gap(self, gap: Gap) -> None:
        """Queue a gap; never blocks, never dropped."""
        self._writer.put_gap(gap)

    def put_event(self, event: LegEvent) -> None:
        """Queue an event; never blocks, never dropped."""
        self._writer.put_event(event)

    async def add_call(self, call: CallInfo) -> None:
        """Record a call (again: updates source and title).  Returns once committed."""
        await self._writer.add_call(call)

    async def add_leg(self, leg: LegInfo) -> None:
        """Record a leg of a recorded call.  Returns once committed."""
        await self._writer.add_leg(leg)

    async def end_leg(self, leg_id: str, *, ended_at_ms: int, duration_ms: int) -> None:
        """Mark a leg ended.  Returns once committed; StorageError if there is no such leg."""
        await self._writer.end_leg(leg_id, ended_at_ms=ended_at_ms, duration_ms=duration_ms)

    async def end_call(self, call_id: str, *, ended_at_ms: int, cause: str) -> None:
        """Mark a call ended.  Returns once committed; StorageError if there is no such call."""
        await self._writer.end_call(call_id, ended_at_ms=ended_at_ms, cause=cause)

    async def end_active_calls(self, *, ended_at_ms: int, cause: str) -> int:
        """Mark every call (and leg) still active as ended; returns how many calls were.

        For start-up: calls a previous process left active when it died.
        """
        rows = await self._read("SELECT count(*) FROM calls WHERE ended_at_ms IS NULL", ())
        await self._writer.end_active_calls(ended_at_ms=ended_at_ms, cause=cause)
        return int(rows[0][0])

    async def end_dead_calls(self, *, cause: str, now_ms: int) -> list[DeadCall]:
        """End every call still active, as left by a process that died (for start-up).

        Each call ends at its last stored activity: the newest of its start, its legs' starts and
        ends, its segments' writes, its call-level events and, for live (not file) legs, their
        start plus the leg clock they reached (never after ``now_ms``), not at the restart.  Its
        open legs are closed with the leg clock they reached (their last segment, gap or event).
        Where the call has a :data:`MEDIA_DURATION_EVENT` (an upload: the length
        of its audio is known), the rest of each open leg is stored as a gap, and the leg's
        duration is the audio's.  One transaction; returns the calls ended.
        """
        calls = await self._read(
            "SELECT c.call_id, max(c.started_at_ms,"
            " coalesce((SELECT max(max(l.started_at_ms, coalesce(l.ended_at_ms, 0)))"
            "           FROM legs AS l WHERE l.call_id = c.call_id), 0),"
            " coalesce((SELECT max(s.updated_at_ms) FROM segments AS s"
            "           WHERE s.call_id = c.call_id), 0),"
            " coalesce((SELECT max(e.at_ms) FROM events AS e"
            "           WHERE e.call_id = c.call_id AND e.leg_id IS NULL), 0)),"
            " (SELECT e.detail FROM events AS e WHERE e.call_id = c.call_id AND e.leg_id IS NULL"
            "  AND e.kind = ? ORDER BY e.id DESC LIMIT 1), c.started_at_ms"
            " FROM calls AS c WHERE c.ended_at_ms IS NULL",
            (MEDIA_DURATION_EVENT,),
        )
        if not calls:
            return []
        legs = await self._read(
            "SELECT l.call_id, l.leg_id, l.source, l.started_at_ms, max("
            " coalesce((SELECT max(s.end_ms) FROM segments AS s WHERE s.leg_id = l.leg_id), 0),"
            " coalesce((SELECT max(g.start_ms + g.duration_ms) FROM gaps AS g"
            "           WHERE g.leg_id = l.leg_id), 0),"
            " coalesce((SELECT max(e.at_ms) FROM events AS e WHERE e.leg_id = l.leg_id), 0))"
            " FROM legs AS l JOIN calls AS c ON c.call_id = l.call_id"
            " WHERE c.ended_at_ms IS NULL AND l.ended_at_ms IS NULL",
            (),
        )
        open_legs: dict[str, list[tuple[str, int]]] = {}
        realtime_end: dict[str, int] = {}  # live legs: their clock runs with the wall clock
        for row in legs:
            call_id, reached_ms = str(row[0]), max(int(row[4]), 0)
            open_legs.setdefault(call_id, []).append((str(row[1]), reached_ms))
            if row[2] != LegSource.FILE.value:  # a file may be fed faster than real time
                end = int(row[3]) + reached_ms
                realtime_end[call_id] = max(realtime_end.get(call_id, 0), end)
        statements: list[tuple[str, str, dict[str, str | int | None]]] = []
        dead: list[DeadCall] = []
        for row in calls:
            call_id = str(row[0])
            last_ms = max(int(row[1]), realtime_end.get(call_id, 0))
            ended_at_ms = max(min(last_ms, now_ms), int(row[3]))
            audio_ms = _duration_ms(row[2])
            untranscribed = 0
            for leg_id, reached_ms in open_legs.get(call_id, []):
                duration_ms = reached_ms
                if audio_ms is not None and audio_ms > reached_ms:
                    duration_ms = audio_ms
                    untranscribed += audio_ms - reached_ms
                    statements.append(
                        (
                            f"gap on leg {leg_id} of dead call {call_id}",
                            "INSERT INTO gaps (call_id, leg_id, start_ms, duration_ms, reason)"
                            " VALUES (:call_id, :leg_id, :start_ms, :duration_ms, :reason)",
                            {
                                "call_id": call_id,
                                "leg_id": leg_id,
                                "start_ms": reached_ms,
                                "duration_ms": audio_ms - reached_ms,
                                "reason": f"not transcribed: the bridge stopped ({cause})",
                            },
                        )
                    )
                statements.append(
                    (
                        f"end leg {leg_id} of dead call {call_id}",
                        "UPDATE legs SET ended_at_ms = :ended_at_ms, duration_ms = :duration_ms"
                        " WHERE leg_id = :leg_id AND ended_at_ms IS NULL",
                        {"leg_id": leg_id, "ended_at_ms": ended_at_ms, "duration_ms": duration_ms},
                    )
                )
            statements.append(
                (
                    f"end dead call {call_id}",
                    "UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause"
                    " WHERE call_id = :call_id AND ended_at_ms IS NULL",
                    {"call_id": call_id, "ended_at_ms": ended_at_ms, "cause": cause},
                )
            )
            legs_closed = len(open_legs.get(call_id, []))
            dead.append(DeadCall(CallId(call_id), ended_at_ms, legs_closed, untranscribed))
        await self._writer.submit_all(statements)
        return dead

    async def set_call_agent(self, call_id: str, agent: str | None) -> None:
        """Assign the call to an agent (who may then see it).  Returns once committed."""
        await self._writer._submit(
            f"set the agent of call {call_id}",
            "UPDATE calls SET agent = :agent WHERE call_id = :call_id",
            {"agent": agent, "call_id": call_id},
        )

    async def delete_call(self, call_id: str) -> bool:
        """Delete a call with its legs, segments, words, gaps and events; False if unknown."""
        rows = await self._read("SELECT 1 FROM calls WHERE call_id = ?", (call_id,))
        if not rows:
            return False
        await self._writer._submit(
            f"delete call {call_id}",
            "DELETE FROM calls WHERE call_id = :call_id",
            {"call_id": call_id},
            must_change=False,
        )
        return True

    async def delete_ended_before(self, cutoff_ms: int) -> int:
        """Retention: delete every call that ended before ``cutoff_ms``; returns how many."""
        rows = await self._read(
            "SELECT count(*) FROM calls WHERE ended_at_ms IS NOT NULL AND ended_at_ms < ?",
            (cutoff_ms,),
        )
        count = int(rows[0][0])
        if count:
            await self._writer._submit(
                f"delete calls ended before {cutoff_ms}",
                "DELETE FROM calls WHERE ended_at_ms IS NOT NULL AND ended_at_ms < :cutoff",
                {"cutoff": cutoff_ms},
                must_change=False,
            )
        return count

    async def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        await self._writer.flush()

    # -- reads ------------------------------------------------------------------------------------

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
            "SELECT w.leg_id, w.seq, w.text, w.start_ms, w.end_ms FROM words AS w"
            " WHERE w.leg_id IN (SELECT leg_id FROM legs WHERE call_id = ?)"
            " ORDER BY w.leg_id, w.seq, w.idx",
            (call_id,),
        )
        segments = await conn.execute_fetchall(
            "SELECT call_id, leg_id, seq, start_ms, end_ms, text, final FROM segments"
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


def _duration_ms(detail: object) -> int | None:
    """``duration_ms=N`` (among space-separated ``key=value`` pairs) from an event detail."""
    if not isinstance(detail, str):
        return None
    for pair in detail.split():
        key, _, value = pair.partition("=")
        if key == "duration_ms" and value.isascii() and value.isdigit() and len(value) <= 12:
            return int(value)
    return None


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
        words.setdefault((w[0], w[1]), []).append(Word(str(w[2]), int(w[3]), int(w[4])))
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
        )
        for r in rows
    )
