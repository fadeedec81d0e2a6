"""Shares the decode workers between legs: text-closing decodes first, then the rest in turn.

Every leg's step loop asks for a decode and waits.  A decode that *closes* text (an utterance
ended at a pause, or the audio ended) is urgent: deltas are held until it runs.  A partial
decode (LocalAgreement on an utterance still going on) only makes text earlier.  When the
workers are busy the urgent ones go first and partial ones wait their turn in request order, so
under load partial decodes thin out (commits get later) instead of every leg falling behind.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

__all__ = ["DecodeScheduler"]


@dataclass(eq=False)
class _Request:
    seq: int
    work: Callable[[], None]
    urgent: Callable[[], bool]
    done: asyncio.Future[None] = field(repr=False)


class DecodeScheduler:
    """At most ``workers`` decodes at once on ``executor``; urgent ones first."""

    def __init__(self, executor: Executor, workers: int) -> None:
        self._executor = executor
        self._workers = workers
        self._running = 0
        self._waiting: list[_Request] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self, work: Callable[[], None], *, urgent: Callable[[], bool]) -> None:
        """Run ``work`` in the executor when its turn comes; re-raise what it raises."""
        loop = asyncio.get_running_loop()
        request = _Request(next(self._seq), work, urgent, loop.create_future())
        self._waiting.append(request)
        self._dispatch()
        try:
            await request.done
        finally:
            if request in self._waiting:  # cancelled while waiting
                self._waiting.remove(request)

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._running < self._workers and self._waiting:
            # Urgency is read now, not when asked: a partial request may have become urgent.
            request = min(self._waiting, key=lambda r: (not r.urgent(), r.seq))
            self._waiting.remove(request)
            if request.done.cancelled():
                continue
            self._running += 1
            future = loop.run_in_executor(self._executor, request.work)
            future.add_done_callback(functools.partial(self._finished, request))

    def _finished(self, request: _Request, future: asyncio.Future[None]) -> None:
        self._running -= 1
        if not request.done.done():
            if future.cancelled():
                request.done.cancel()
            elif (exc := future.exception()) is not None:
                request.done.set_exception(exc)
            else:
                request.done.set_result(None)
        self._dispatch()
