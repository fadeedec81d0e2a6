"""The one writer task: every write to the transcript store, batched into few transactions.

``put_*`` never blocks the event loop: items wait in a :class:`~storage.pending.WriteQueue`
(partials coalesced, and dropped only when ``max_pending_partials`` keys wait; finals, gaps,
events and awaited operations never dropped -- see :mod:`storage.pending` for the overflow rule).

Commit timing (design.md §2: finals must be durable quickly)
------------------------------------------------------------
A final segment or an awaited operation starts a transaction at once; items put while one is
running wait for the next, so bursts group-commit.  Partials, gaps and events alone are committed
once the oldest of them has waited ``commit_interval_ms`` (200 ms).  So a final is committed
within one transaction's time of ``put_segment``, far inside the 1 s promise.  Each batch is one
transaction (:mod:`storage.transaction`).

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
from pathlib import Path

import aiosqlite

from bridge.core.types import CallInfo, Gap, LegEvent, LegInfo, Segment
from bridge.errors import StorageError

from .pending import Item, Op, WriteQueue
from .statements import (
    ADD_CALL,
    ADD_LEG,
    END_CALL,
    END_LEG,
    Params,
    Statement,
    call_params,
    leg_params,
)
from .transaction import Transactions

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING_PARTIALS = 10_000
DEFAULT_COMMIT_INTERVAL_MS = 200
DEFAULT_BACKLOG_WARNING = 10_000
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 5.0
_CLOSE_GIVE_UP_S = 10.0


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
        self._path = path
        self._commit_interval_s = commit_interval_ms / 1000
        self._queue = WriteQueue(
            path, max_pending_partials=max_pending_partials, backlog_warning=backlog_warning
        )
        self._transactions = Transactions(conn, path)
        self._closing_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

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
            self._queue.wake.set()
        await self._task

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("the transcript writer for %s stopped: %s", self._path, exc)

    # -- facts ------------------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Items waiting to be committed (partials coalesced)."""
        return len(self._queue)

    @property
    def commits(self) -> int:
        """Transactions committed so far."""
        return self._transactions.commits

    @property
    def dropped_partials(self) -> int:
        """Partial revisions dropped because ``max_pending_partials`` keys were queued."""
        return self._queue.dropped_partials

    @property
    def rejected(self) -> int:
        """Segments, gaps and events SQLite refused (unknown call or leg id), logged and dropped."""
        return self._transactions.rejected

    # -- producers --------------------------------------------------------------------------------

    def put_segment(self, segment: Segment) -> None:
        """Queue a segment revision (never blocks; a partial may be coalesced or dropped)."""
        self._check_open()
        self._queue.put_segment(segment)

    def put_gap(self, gap: Gap) -> None:
        """Queue a gap (never blocks, never dropped)."""
        self._check_open()
        self._queue.append(gap, urgent=False)

    def put_event(self, event: LegEvent) -> None:
        """Queue an event (never blocks, never dropped)."""
        self._check_open()
        self._queue.append(event, urgent=False)

    async def add_call(self, call: CallInfo) -> None:
        await self.submit(f"add call {call.call_id}", ADD_CALL, call_params(call))

    async def add_leg(self, leg: LegInfo) -> None:
        what = f"add leg {leg.leg_id} to call {leg.call_id} (no such call, or the leg has another)"
        await self.submit(what, ADD_LEG, leg_params(leg))

    async def end_leg(self, leg_id: str, *, ended_at_ms: int, duration_ms: int) -> None:
        params: Params = {"leg_id": leg_id, "ended_at_ms": ended_at_ms, "duration_ms": duration_ms}
        await self.submit(f"end leg {leg_id} (no such leg)", END_LEG, params)

    async def end_call(self, call_id: str, *, ended_at_ms: int, cause: str) -> None:
        params: Params = {"call_id": call_id, "ended_at_ms": ended_at_ms, "cause": cause}
        await self.submit(f"end call {call_id} (no such call)", END_CALL, params)

    async def submit_all(self, statements: list[Statement]) -> None:
        """Run ``(what, sql, params)`` statements in one transaction (queued together, so the
        task takes them in one batch); a statement may change no row."""
        self._check_open()
        loop = asyncio.get_running_loop()
        ops = [
            Op(what, sql, params, loop.create_future(), False) for what, sql, params in statements
        ]
        for op in ops:
            self._queue.append(op, urgent=True)
        await asyncio.gather(*(op.future for op in ops))

    async def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        await self.submit("flush", None, {}, must_change=False)

    async def submit(
        self, what: str, sql: str | None, params: Params, *, must_change: bool = True
    ) -> None:
        """Run one statement in the next transaction; return once committed.  ``what`` names it
        in errors; ``must_change``: changing no row (an unknown id) raises StorageError."""
        self._check_open()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(Op(what, sql, params, future, must_change), urgent=True)
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

    # -- the task ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        batch: list[Item] = []
        try:
            while True:
                await self._wait_for_work()
                batch = self._queue.take()
                if not batch:
                    return  # closing, and everything is committed
                await self._commit_with_retry(batch)
                batch = []
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._abandon(batch + self._queue.take())

    async def _wait_for_work(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            timeout_s: float | None = None
            if queue.oldest_pending_at is not None:
                if queue.urgent or self._closing_at is not None:
                    return
                timeout_s = queue.oldest_pending_at + self._commit_interval_s - loop.time()
                if timeout_s <= 0:
                    return
            elif self._closing_at is not None:
                return
            queue.wake.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await queue.wake.wait()
            except TimeoutError:
                pass

    def _abandon(self, items: list[Item]) -> None:
        """Fail the callers of items that will never be written (the writer stopped)."""
        if not items:
            return
        error = StorageError(
            f"the transcript writer for {self._path} stopped before saving this: {self._failure}",
            retryable=False,
        )
        lost = 0
        for item in items:
            if isinstance(item, Op):
                if not item.future.done():
                    item.future.set_exception(error)
            else:
                lost += 1
        if lost:
            logger.error("%s: %d segments/gaps/events were not saved", self._path, lost)

    async def _commit_with_retry(self, batch: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        delay_s = _RETRY_FIRST_S
        while True:
            try:
                await self._transactions.commit(batch)
                return
            except StorageError as exc:
                closing_for_s = 0.0 if self._closing_at is None else loop.time() - self._closing_at
                if not exc.retryable or closing_for_s > _CLOSE_GIVE_UP_S:
                    raise
                logger.warning("%s; retrying %d items in %.1f s", exc, len(batch), delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_MAX_S)
