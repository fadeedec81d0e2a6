"""The legs of this process: their counters for ``/metrics`` and the registry of live legs that
SIP admission watches (one per process: :data:`LIVE`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.watchers import Watchers

if TYPE_CHECKING:
    from bridge.leg import Leg


@dataclass
class LegCounters:
    """Process-wide totals for ``/metrics`` (counters only grow; gauges come from live legs)."""

    deltas: int = 0  # transcription.delta events received, all legs
    samples_dropped: int = 0  # input samples the legs' audio paths dropped (overlaps, dups)


COUNTERS = LegCounters()


class LegRegistry:
    """The legs started and not yet finished (weakly held: a leg dropped unfinished leaves too),
    and who wants to know when that changes: SIP admission tells its workers at once when the
    ASR side fills up or frees, with no polling.  One per process: :data:`LIVE`."""

    def __init__(self) -> None:
        self._legs: weakref.WeakSet[Leg] = weakref.WeakSet()
        self._changed = Watchers("leg registry")

    def __len__(self) -> int:
        return len(self._legs)

    def legs(self) -> list[Leg]:
        return list(self._legs)

    def add(self, leg: Leg) -> None:
        if leg not in self._legs:
            self._legs.add(leg)
            self._changed()

    def discard(self, leg: Leg) -> None:
        if leg in self._legs:
            self._legs.discard(leg)
            self._changed()

    def changed(self) -> None:
        """A leg's state that admission depends on changed (it started or stopped lagging)."""
        self._changed()

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher()`` (on the loop, synchronously) after every change."""
        self._changed.add(watcher)

    def unwatch(self, watcher: Callable[[], None]) -> None:
        self._changed.remove(watcher)


LIVE = LegRegistry()


def live_legs() -> list[Leg]:
    """Legs started and not yet finished, in this process."""
    return LIVE.legs()
