"""The one writer task: every write to the transcript store, batched into few transactions.

Queue and overflow rule
-----------------------
``put_*`` never blocks the event loop.  Two pending collections, both drained completely into
each transaction:

* **partials** -- the newest unwritten partial revision of each ``(leg_id, seq)``, at most
  ``max_pending_partials`` keys.  A newer revision replaces the queued one in place (coalescing:
  a segment's text is the whole utterance so far, so only the newest revision matters).  When the
  map is full, a partial for a key not yet in it is *dropped* and counted in
  ``dropped_partials``: the segment's next revision, or its final, carries the same text and more.
* **ordered** -- final segments, gaps, events and the awaited operations (add/end a call or leg,
  flush), in the order they were put.  These are *never dropped*, so this list has no count
  limit: it is bounded by the producers' rate (one final per utterance, a few events per leg),
  not by the audio rate.  Past ``backlog_warning`` items (the disk is not keeping up) a warning is
  logged once per episode, and :attr:`Writer.backlog` lets the owner refuse new calls.

Commit timing (design.md §2: finals must be durable quickly)
------------------------------------------------------------
A final segment or an awaited operation starts a transaction at once; items put while one is
running wait for the next, so bursts group-commit.  Partials, gaps and events alone are committed
once the oldest of them has waited ``commit_interval_ms`` (200 ms).  So a final is committed
within one transaction's time of ``put_segment``, far inside the 1 s promise.

Within a transaction the ordered items are written first, in order (a call before its legs,
legs before their segments), then the coalesced partials.  A segment upsert never turns a final
row back into a partial, and a segment's words are replaced only when its row is.

Errors
------
Retryable SQLite errors (busy, disk full, I/O) roll back and retry the same batch with backoff
(0.2 s doubling to 5 s) while the items wait in memory; at close the writer gives up after
``_CLOSE_GIVE_UP_S``.  An item SQLite refuses (an unknown call or leg id) is dropped alone with an
error log, or fails its awaiting caller; the rest of the batch commits.  Any other error stops the
writer: awaiting callers get the StorageError, later ``put_*`` calls raise it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import aiosqlite

from bridge.core.types import CallInfo, Gap, LegEvent, LegInfo, Segment
from bridge.errors import StorageError

from .connection import storage_error

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING_PARTIALS = 10_000
DEFAULT_COMMIT_INTERVAL_MS = 200
DEFAULT_BACKLOG_WARNING = 10_000
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 5.0
_CLOSE_GIVE_UP_S = 10.0

# -- SQL ------------------------------------------------------------------------------------------

_ADD_CALL = """
INSERT INTO calls (call_id, source, title, started_at_ms, agent)
VALUES (:call_id, :source, :title, :started_at_ms, :agent)
ON CONFLICT (call_id) DO UPDATE SET source = excluded.source, title = excluded.title,
    agent = coalesce(excluded.agent, calls.agent)
"""

# Re-adding a leg updates its description; moving it to another call changes no row (an error).
_ADD_LEG = """
INSERT INTO legs (leg_id, call_id, role, label, codec, source, started_at_ms)
VALUES (:leg_id, :call_id, :role, :label, :codec, :source, :started_at_ms)
ON CONFLICT (leg_id) DO UPDATE SET
    role = excluded.role, label = excluded.label, codec = excluded.codec, source = excluded.source
WHERE legs.call_id = excluded.call_id
"""

_END_LEG = """
UPDATE legs SET ended_at_ms = :ended_at_ms, duration_ms = :duration_ms WHERE leg_id = :leg_id
"""

_END_CALL = """
UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause WHERE call_id = :call_id
"""

# A process that died left calls and legs "active": close them (duration unknown: NULL).
_END_ACTIVE_LEGS = """
UPDATE legs SET ended_at_ms = :ended_at_ms WHERE ended_at_ms IS NULL
"""
_END_ACTIVE_CALLS = """
UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause WHERE ended_at_ms IS NULL
"""

# Idempotent by (leg_id, seq); a final row is never replaced by a partial revision (a partial
# replayed after the final must not un-finalise it).  A final may replace a final (a replay).
_UPSERT_SEGMENT = """
INSERT INTO segments (leg_id, seq, call_id, start_ms, end_ms, text, final, updated_at_ms)
VALUES (:leg_id, :seq, :call_id, :start_ms, :end_ms, :text, :final, :updated_at_ms)
ON CONFLICT (leg_id, seq) DO UPDATE SET
    call_id = excluded.call_id, start_ms = excluded.start_ms, end_ms = excluded.end_ms,
    text = excluded.text, final = excluded.final, updated_at_ms = excluded.updated_at_ms
WHERE excluded.final = 1 OR segments.final = 0
"""

# The same guard as the upsert's WHERE, so words change exactly when their segment row did.
_KEEPS_WORDS = """
    :final = 0 AND EXISTS (SELECT 1 FROM segments AS s
                           WHERE s.leg_id = :leg_id AND s.seq = :seq AND s.final = 1)
"""

_DELETE_WORDS = f"""
DELETE FROM words WHERE leg_id = :leg_id AND seq = :seq AND NOT ({_KEEPS_WORDS})
"""

_INSERT_WORD = f"""
INSERT INTO words (leg_id, seq, idx, text, start_ms, end_ms)
SELECT :leg_id, :seq, :idx, :text, :start_ms, :end_ms WHERE NOT ({_KEEPS_WORDS})
"""

_INSERT_GAP = """
INSERT INTO gaps (call_id, leg_id, start_ms, duration_ms, reason)
VALUES (:call_id, :leg_id, :start_ms, :duration_ms, :reason)
"""

_INSERT_EVENT = """
INSERT INTO events (call_id, leg_id, at_ms, kind, detail)
VALUES (:call_id, :leg_id, :at_ms, :kind, :detail)
"""

# -- queue items ----------------------------------------------------------------------------------

Params: TypeAlias = dict[str, str | int | None]


@dataclass(slots=True, eq=False)
class _Op:
    """An awaited operation: one statement (``None``: a flush barrier) and the caller's future."""

    what: str
    sql: str | None
    params: Params
    future: asyncio.Future[None]
    must_change: bool = True  # changing no row means an unknown id: fail the caller
    error: StorageError | None = field(default=None)


_Item: TypeAlias = Segment | Gap | LegEvent | _Op


def _describe(item: _Item) -> str:
    if isinstance(item, _Op):
        return item.what
    if isinstance(item, Segment):
        kind = "final" if item.final else "partial"
        return f"{kind} segment {item.leg_id}/{item.seq} of call {item.call_id}"
    if isinstance(item, Gap):
        return f"gap at {item.start_ms} ms on leg {item.leg_id} of call {item.call_id}"
    return f"event {item.kind!r} of call {item.call_id}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- the writer -----------------------------------------------------------------------------------


class Writer:
    """Owns the write connection; one task drains the queue into transactions (module docstring)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        *,
        max_pending_partials: int = DEFAULT_MAX_PENDING_PARTIALS,
        commit_interval_ms: int = DEFAULT_COMMIT_INTERVAL_MS,
        backlog_warning: int = DEFAULT_BACKLOG_WARNING,
    ) -> None:
        if max_pending_partials < 1 or commit_interval_ms < 0 or backlog_warning < 1:
            raise ValueError(
                "max_pending_partials and backlog_warning must be >= 1, commit_interval_ms >= 0"
            )
        self._conn = conn
        self._path = path
        self._max_pending_partials = max_pending_partials
        self._commit_interval_s = commit_interval_ms / 1000
        self._backlog_warning = backlog_warning
        self._partials: dict[tuple[str, int], Segment] = {}
        self._ordered: list[_Item] = []
        self._oldest_pending_at: float | None = None  # loop time; None: nothing pending
        self._urgent = False
        self._wake = asyncio.Event()
        self._closing_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._dropping = False
        self._backlogged = False
        #: Transactions committed so far.
        self.commits = 0
        #: Partial revisions dropped because ``max_pending_partials`` keys were queued.
        self.dropped_partials = 0
        #: Segments, gaps and events SQLite refused (unknown call or leg id), logged and dropped.
        self.rejected = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (once)."""
        if self._task is not None:
            raise RuntimeError("the writer was started already")
        self._task = asyncio.create_task(self._run(), name=f"storage writer {self._path}")
        self._task.add_done_callback(self._on_done)

    async def stop(self) -> None:
        """Commit everything queued, then end the task; raise if the writer failed."""
        if self._task is None:
            return
        if self._closing_at is None:
            self._closing_at = asyncio.get_running_loop().time()
            self._wake.set()
        await self._task

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("the transcript writer for %s stopped: %s", self._path, exc)

    @property
    def backlog(self) -> int:
        """Items waiting to be committed (partials coalesced)."""
        return len(self._ordered) + len(self._partials)

    # -- producers --------------------------------------------------------------------------------

    def put_segment(self, segment: Segment) -> None:
        """Queue a segment revision (never blocks; a partial may be coalesced or dropped)."""
        self._check_open()
        key = (segment.leg_id, segment.seq)
        if segment.final:
            self._partials.pop(key, None)  # superseded
            self._append(segment, urgent=True)
        elif key in self._partials or len(self._partials) < self._max_pending_partials:
            self._partials[key] = segment
            self._dropping = False
            self._mark_pending(urgent=False)
        else:
            self.dropped_partials += 1
            if not self._dropping:
                self._dropping = True
                logger.warning(
                    "%s: %d partial segments queued (the limit); dropping new ones such as "
                    "%s/%d until the writer catches up (their next revision carries the text)",
                    self._path,
                    len(self._partials),
                    segment.leg_id,
                    segment.seq,
                )

    def put_gap(self, gap: Gap) -> None:
        """Queue a gap (never blocks, never dropped)."""
        self._check_open()
        self._append(gap, urgent=False)

    def put_event(self, event: LegEvent) -> None:
        """Queue an event (never blocks, never dropped)."""
        self._check_open()
        self._append(event, urgent=False)

    async def add_call(self, call: CallInfo) -> None:
        params: Params = {
            "call_id": call.call_id,
            "source": call.source.value,
            "title": call.title,
            "started_at_ms": call.started_at_ms,
            "agent": call.agent,
        }
        await self._submit(f"add call {call.call_id}", _ADD_CALL, params)

    async def add_leg(self, leg: LegInfo) -> None:
        params: Params = {
            "leg_id": leg.leg_id,
            "call_id": leg.call_id,
            "role": leg.role.value,
            "label": leg.label,
            "codec": leg.codec,
            "source": leg.source.value,
            "started_at_ms": leg.started_at_ms,
        }
        what = f"add leg {leg.leg_id} to call {leg.call_id} (no such call, or the leg has another)"
        await self._submit(what, _ADD_LEG, params)

    async def end_leg(self, leg_id: str, *, ended_at_ms: int, duration_ms: int) -> None:
        params: Params = {"leg_id": leg_id, "ended_at_ms": ended_at_ms, "duration_ms": duration_ms}
        await self._submit(f"end leg {leg_id} (no such leg)", _END_LEG, params)

    async def end_call(self, call_id: str, *, ended_at_ms: int, cause: str) -> None:
        params: Params = {"call_id": call_id, "ended_at_ms": ended_at_ms, "cause": cause}
        await self._submit(f"end call {call_id} (no such call)", _END_CALL, params)

    async def end_active_calls(self, *, ended_at_ms: int, cause: str) -> None:
        params: Params = {"ended_at_ms": ended_at_ms, "cause": cause}
        await self._submit("end active legs", _END_ACTIVE_LEGS, params, must_change=False)
        await self._submit("end active calls", _END_ACTIVE_CALLS, params, must_change=False)

    async def submit_all(self, statements: list[tuple[str, str, Params]]) -> None:
        """Run ``(what, sql, params)`` statements in one transaction (queued together, so the
        task takes them in one batch); a statement may change no row."""
        self._check_open()
        loop = asyncio.get_running_loop()
        ops = [
            _Op(what, sql, params, loop.create_future(), False) for what, sql, params in statements
        ]
        for op in ops:
            self._append(op, urgent=True)
        await asyncio.gather(*(op.future for op in ops))

    async def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        await self._submit("flush", None, {}, must_change=False)

    async def _submit(
        self, what: str, sql: str | None, params: Params, *, must_change: bool = True
    ) -> None:
        self._check_open()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._append(_Op(what, sql, params, future, must_change), urgent=True)
        await future

    def _check_open(self) -> None:
        if self._failure is not None:
            raise StorageError(
                f"the transcript writer for {self._path} stopped: {self._failure}; "
                "nothing more can be saved until the store is reopened",
                retryable=False,
            )
        if self._task is None or self._closing_at is not None:
            raise StorageError(
                f"the transcript store {self._path} is not open (closed or closing)",
                retryable=False,
            )

    def _append(self, item: _Item, *, urgent: bool) -> None:
        self._ordered.append(item)
        if len(self._ordered) > self._backlog_warning and not self._backlogged:
            self._backlogged = True
            logger.warning(
                "%s: %d finals/gaps/events/operations wait to be written; the disk is not "
                "keeping up (none are dropped; memory grows)",
                self._path,
                len(self._ordered),
            )
        self._mark_pending(urgent=urgent)

    def _mark_pending(self, *, urgent: bool) -> None:
        # Wake the task only on a change it cares about: not on every partial.
        if self._oldest_pending_at is None:
            self._oldest_pending_at = asyncio.get_running_loop().time()
            self._wake.set()
        if urgent and not self._urgent:
            self._urgent = True
            self._wake.set()

    # -- the task ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        batch: list[_Item] = []
        try:
            while True:
                await self._wait_for_work()
                batch = self._take()
                if not batch:
                    return  # closing, and everything is committed
                await self._commit_with_retry(batch)
                batch = []
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._abandon(batch + self._take())

    async def _wait_for_work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            timeout_s: float | None = None
            if self._oldest_pending_at is not None:
                if self._urgent or self._closing_at is not None:
                    return
                timeout_s = self._oldest_pending_at + self._commit_interval_s - loop.time()
                if timeout_s <= 0:
                    return
            elif self._closing_at is not None:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _take(self) -> list[_Item]:
        items = self._ordered
        items.extend(self._partials.values())
        self._ordered = []
        self._partials = {}
        self._oldest_pending_at = None
        self._urgent = False
        self._backlogged = False
        return items

    def _abandon(self, items: list[_Item]) -> None:
        """Fail the callers of items that will never be written (the writer stopped)."""
        if not items:
            return
        error = StorageError(
            f"the transcript writer for {self._path} stopped before saving this: {self._failure}",
            retryable=False,
        )
        lost = 0
        for item in items:
            if isinstance(item, _Op):
                if not item.future.done():
                    item.future.set_exception(error)
            else:
                lost += 1
        if lost:
            logger.error("%s: %d segments/gaps/events were not saved", self._path, lost)

    async def _commit_with_retry(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        delay_s = _RETRY_FIRST_S
        while True:
            try:
                await self._commit(batch)
                return
            except StorageError as exc:
                closing_for_s = 0.0 if self._closing_at is None else loop.time() - self._closing_at
                if not exc.retryable or closing_for_s > _CLOSE_GIVE_UP_S:
                    raise
                logger.warning("%s; retrying %d items in %.1f s", exc, len(batch), delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_MAX_S)

    async def _commit(self, batch: list[_Item]) -> None:
        conn = self._conn
        for item in batch:
            if isinstance(item, _Op):
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
            if isinstance(item, _Op) and not item.future.done():
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

    async def _apply_each(self, batch: list[_Item]) -> None:
        for item in batch:
            await self._conn.execute("SAVEPOINT item")
            try:
                await self._apply([item])
            except sqlite3.IntegrityError as exc:
                await self._conn.execute("ROLLBACK TO item")
                if isinstance(item, _Op):
                    item.error = StorageError(
                        f"{item.what}: refused by {self._path}: {exc}", retryable=False
                    )
                else:
                    self.rejected += 1
                    logger.error(
                        "%s: dropping %s: %s (was its call or leg added?)",
                        self._path,
                        _describe(item),
                        exc,
                    )
            await self._conn.execute("RELEASE item")

    async def _apply(self, items: list[_Item]) -> None:
        """Write ``items`` in order, runs of the same kind with one ``executemany`` each."""
        now_ms = _now_ms()
        start = 0
        while start < len(items):
            kind = type(items[start])
            end = start
            while end < len(items) and type(items[end]) is kind:
                end += 1
            run = items[start:end]
            if kind is _Op:
                for op in run:
                    assert isinstance(op, _Op)
                    await self._apply_op(op)
            elif kind is Segment:
                await self._write_segments([s for s in run if isinstance(s, Segment)], now_ms)
            elif kind is Gap:
                await self._conn.executemany(
                    _INSERT_GAP, [_gap_params(g) for g in run if isinstance(g, Gap)]
                )
            else:
                await self._conn.executemany(
                    _INSERT_EVENT, [_event_params(e) for e in run if isinstance(e, LegEvent)]
                )
            start = end

    async def _apply_op(self, op: _Op) -> None:
        if op.sql is None:
            return
        async with self._conn.execute(op.sql, op.params) as cursor:
            changed = cursor.rowcount
        if op.must_change and changed == 0:
            op.error = StorageError(f"{op.what}: {self._path} changed no row", retryable=False)

    async def _write_segments(self, segments: list[Segment], now_ms: int) -> None:
        # One revision per key, so the words of two revisions never collide: the later one,
        # unless that would put a partial over a final.
        chosen: dict[tuple[str, int], Segment] = {}
        for segment in segments:
            key = (segment.leg_id, segment.seq)
            queued = chosen.get(key)
            if queued is None or segment.final or not queued.final:
                chosen[key] = segment
        rows: list[Params] = []
        keys: list[Params] = []
        words: list[Params] = []
        for s in chosen.values():
            final = 1 if s.final else 0
            key_params: Params = {"leg_id": s.leg_id, "seq": s.seq, "final": final}
            keys.append(key_params)
            rows.append(
                key_params
                | {
                    "call_id": s.call_id,
                    "start_ms": s.start_ms,
                    "end_ms": s.end_ms,
                    "text": s.text,
                    "updated_at_ms": now_ms,
                }
            )
            words.extend(
                key_params
                | {"idx": idx, "text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms}
                for idx, w in enumerate(s.words)
            )
        await self._conn.executemany(_UPSERT_SEGMENT, rows)
        await self._conn.executemany(_DELETE_WORDS, keys)
        if words:
            await self._conn.executemany(_INSERT_WORD, words)


def _gap_params(gap: Gap) -> Params:
    return {
        "call_id": gap.call_id,
        "leg_id": gap.leg_id,
        "start_ms": gap.start_ms,
        "duration_ms": gap.duration_ms,
        "reason": gap.reason,
    }


def _event_params(event: LegEvent) -> Params:
    return {
        "call_id": event.call_id,
        "leg_id": event.leg_id,
        "at_ms": event.at_ms,
        "kind": event.kind,
        "detail": event.detail,
    }
