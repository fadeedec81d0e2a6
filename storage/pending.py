"""What waits for the writer: coalesced partials and the ordered items (no I/O).

Queue and overflow rule
-----------------------
``put_*`` never blocks the event loop.  Two pending collections, both drained completely into
each transaction (:meth:`WriteQueue.take`):

* **partials** -- the newest unwritten partial revision of each ``(leg_id, seq)``, at most
  ``max_pending_partials`` keys.  A newer revision replaces the queued one in place (coalescing:
  a segment's text is the whole utterance so far, so only the newest revision matters).  When the
  map is full, a partial for a key not yet in it is *dropped* and counted in
  ``dropped_partials``: the segment's next revision, or its final, carries the same text and more.
* **ordered** -- final segments, gaps, events and the awaited operations (add/end a call or leg,
  flush), in the order they were put.  These are *never dropped*, so this list has no count
  limit: it is bounded by the producers' rate (one final per utterance, a few events per leg),
  not by the audio rate.  Past ``backlog_warning`` items (the disk is not keeping up) a warning is
  logged once per episode, and the writer's ``backlog`` lets the owner refuse new calls.

A batch lists the ordered items first, in order (a call before its legs, legs before their
segments), then the coalesced partials.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from bridge.core.types import Gap, LegEvent, Segment
from bridge.errors import StorageError

from .statements import Params

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Op:
    """An awaited operation: one statement (``None``: a flush barrier) and the caller's future."""

    what: str
    sql: str | None
    params: Params
    future: asyncio.Future[None]
    must_change: bool = True  # changing no row means an unknown id: fail the caller
    error: StorageError | None = field(default=None)


Item: TypeAlias = Segment | Gap | LegEvent | Op


def describe(item: Item) -> str:
    """An item as an error message names it."""
    if isinstance(item, Op):
        return item.what
    if isinstance(item, Segment):
        kind = "final" if item.final else "partial"
        return f"{kind} segment {item.leg_id}/{item.seq} of call {item.call_id}"
    if isinstance(item, Gap):
        return f"gap at {item.start_ms} ms on leg {item.leg_id} of call {item.call_id}"
    return f"event {item.kind!r} of call {item.call_id}"


class WriteQueue:
    """The pending items (module docstring) and when the writer task should take them.

    ``oldest_pending_at`` (loop time; ``None``: nothing pending) and ``urgent`` (a final or an
    awaited operation waits) tell the task when to commit; ``wake`` is set on a change it cares
    about -- not on every partial.
    """

    def __init__(self, path: Path, *, max_pending_partials: int, backlog_warning: int) -> None:
        self._path = path
        self._max_pending_partials = max_pending_partials
        self._backlog_warning = backlog_warning
        self._partials: dict[tuple[str, int], Segment] = {}
        self._ordered: list[Item] = []
        self._dropping = False
        self._backlogged = False
        self.oldest_pending_at: float | None = None
        self.urgent = False
        self.wake = asyncio.Event()
        #: Partial revisions dropped because ``max_pending_partials`` keys were queued.
        self.dropped_partials = 0

    def __len__(self) -> int:
        """Items waiting to be committed (partials coalesced)."""
        return len(self._ordered) + len(self._partials)

    def put_segment(self, segment: Segment) -> None:
        """Queue a segment revision: a final in order, a partial coalesced or dropped."""
        key = (segment.leg_id, segment.seq)
        if segment.final:
            self._partials.pop(key, None)  # superseded
            self.append(segment, urgent=True)
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

    def append(self, item: Item, *, urgent: bool) -> None:
        """Queue an item in order; ``urgent``: commit it without waiting for the interval."""
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

    def take(self) -> list[Item]:
        """Everything pending, as one batch: the ordered items, then the partials."""
        items = self._ordered
        items.extend(self._partials.values())
        self._ordered = []
        self._partials = {}
        self.oldest_pending_at = None
        self.urgent = False
        self._backlogged = False
        return items

    def _mark_pending(self, *, urgent: bool) -> None:
        if self.oldest_pending_at is None:
            self.oldest_pending_at = asyncio.get_running_loop().time()
            self.wake.set()
        if urgent and not self.urgent:
            self.urgent = True
            self.wake.set()
