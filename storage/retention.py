"""Retention: ended calls older than ``http.retention_days`` are deleted, at start and hourly.

:func:`retention_cutoff_ms` says what is due (pure); :func:`retention_loop` deletes it, in
``bridge serve``, until told to stop.  Active calls are never deleted, however old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .store import TranscriptStore

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0
_DAY_MS = 86_400_000


def retention_cutoff_ms(days: float, *, now_ms: int) -> int:
    """Calls that ended before this (``days`` before ``now_ms``) are due for deletion."""
    if not days > 0:  # also NaN
        raise ValueError(
            f"retention days must be > 0, got {days} (0 keeps every call: run no retention)"
        )
    return now_ms - int(days * _DAY_MS)


async def retention_loop(
    store: TranscriptStore,
    days: float,
    stop: asyncio.Event,
    interval_s: float = RETENTION_INTERVAL_S,
) -> None:
    """Delete ended calls older than ``days``, now and every ``interval_s``, until ``stop``."""
    while not stop.is_set():
        cutoff_ms = retention_cutoff_ms(days, now_ms=time.time_ns() // 1_000_000)
        deleted = await store.delete_ended_before(cutoff_ms)
        if deleted:
            logger.info("retention: deleted %d call(s) that ended over %s days ago", deleted, days)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
