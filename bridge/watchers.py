"""Callbacks told that something changed: the live legs, an ASR server's health (admission
depends on both, and SIP tells its workers at once rather than poll)."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Watchers:
    """Run synchronously, in the order added; one that raises is logged and the rest still run
    (a watcher's bug must not fail the leg or the failover that caused the change)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def __call__(self) -> None:
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                logger.exception("%s watcher failed", self._what)
