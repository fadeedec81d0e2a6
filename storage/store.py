"""The transcript store: SQLite behind a small async interface (design.md §4).

Writes go through one :class:`~storage.writer.Writer` task on its own connection (batched; see
its docstring for the queue, overflow and commit rules).  Reads use a second, ``query_only``
connection (:class:`~storage.reader.CallReader`): in WAL mode readers see the last commit and
never wait for the writer.

Usage::

    async with await TranscriptStore.open("var/transcripts.db") as store:
        await store.add_call(call)
        await store.add_leg(leg)
        store.put_segment(segment)          # never blocks
        transcript = await store.get_call(call.call_id)
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

import aiosqlite

from bridge.core.types import CallInfo, Gap, LegEvent, LegInfo, Segment
from bridge.errors import StorageError

from . import recovery
from .connection import DEFAULT_BUSY_TIMEOUT_MS, close_quietly, connect
from .migrate import migrate
from .reader import CallReader
from .records import DeadCall
from .writer import DEFAULT_COMMIT_INTERVAL_MS, DEFAULT_MAX_PENDING_PARTIALS, Writer

logger = logging.getLogger(__name__)


class TranscriptStore(CallReader):
    """Calls, legs, segments with words, gaps and events in one SQLite file.

    Open with :meth:`open`; close with :meth:`close` or use ``async with``.  Methods raise
    :class:`~bridge.errors.StorageError` when SQLite fails; its message names the file and what to
    do, and ``retryable`` says whether trying again can help.  The reads (``list_calls``,
    ``search_calls``, ``get_call``, ``find_call_id``) are :class:`~storage.reader.CallReader`'s.
    """

    def __init__(
        self,
        path: Path,
        write_conn: aiosqlite.Connection,
        read_conn: aiosqlite.Connection,
        writer: Writer,
    ) -> None:
        """Use :meth:`open`."""
        super().__init__(path, read_conn)
        self._write_conn = write_conn
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

    def put_dtmf(self, event: LegEvent, digit: str, duration_ms: int) -> None:
        """A DTMF digit's ``dtmf`` event (its details are in ``event.detail``): stored like any
        event; a sink that publishes (``bridge.live``) also pushes the digit live."""
        self.put_event(event)

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
        return await recovery.end_active_calls(
            self._read, self._writer, ended_at_ms=ended_at_ms, cause=cause
        )

    async def end_dead_calls(self, *, cause: str, now_ms: int) -> list[DeadCall]:
        """End every call still active, as left by a process that died (for start-up).

        Each call ends at its last stored activity: the newest of its start, its legs' starts and
        ends, its segments' writes, its call-level events and, for live (not file) legs, their
        start plus the leg clock they reached (never after ``now_ms``), not at the restart.  Its
        open legs are closed with the leg clock they reached (their last segment, gap or event).
        Where the call has a :data:`~storage.MEDIA_DURATION_EVENT` (an upload: the length
        of its audio is known), the rest of each open leg is stored as a gap, and the leg's
        duration is the audio's.  One transaction; returns the calls ended.
        """
        return await recovery.end_dead_calls(self._read, self._writer, cause=cause, now_ms=now_ms)

    async def set_call_agent(self, call_id: str, agent: str | None) -> None:
        """Assign the call to an agent (who may then see it).  Returns once committed."""
        await self._writer.submit(
            f"set the agent of call {call_id}",
            "UPDATE calls SET agent = :agent WHERE call_id = :call_id",
            {"agent": agent, "call_id": call_id},
        )

    async def delete_call(self, call_id: str) -> bool:
        """Delete a call with its legs, segments, words, gaps and events; False if unknown."""
        rows = await self._read("SELECT 1 FROM calls WHERE call_id = ?", (call_id,))
        if not rows:
            return False
        await self._writer.submit(
            f"delete call {call_id}",
            "DELETE FROM calls WHERE call_id = :call_id",
            {"call_id": call_id},
            must_change=False,
        )
        return True

    async def delete_ended_before(self, cutoff_ms: int) -> int:
        """Retention: delete every call that ended before ``cutoff_ms``; returns how many.

        :func:`storage.retention.retention_loop` calls it hourly in ``bridge serve``.
        """
        rows = await self._read(
            "SELECT count(*) FROM calls WHERE ended_at_ms IS NOT NULL AND ended_at_ms < ?",
            (cutoff_ms,),
        )
        count = int(rows[0][0])
        if count:
            await self._writer.submit(
                f"delete calls ended before {cutoff_ms}",
                "DELETE FROM calls WHERE ended_at_ms IS NOT NULL AND ended_at_ms < :cutoff",
                {"cutoff": cutoff_ms},
                must_change=False,
            )
        return count

    async def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        await self._writer.flush()
