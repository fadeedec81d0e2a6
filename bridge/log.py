"""Logging policy and the adapter that names the call and leg on every line.

Levels (as websockets documents them):

* ERROR: a leg or call lost, or a bug;
* WARNING: degraded but going on (ASR reconnects, buffer overflow gaps, unsolicited ``done``);
* INFO: lifecycle - calls and legs start/stop, ASR sessions open/close, the config summary;
* DEBUG: protocol events.  Audio and transcript text are never logged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any


class LegLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with ``[call/leg]`` and attaches ``call_id``/``leg_id`` to records."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{str(extra.get('call_id', '-'))[:8]}/{extra.get('leg_label', '-')}] {msg}", kwargs


def leg_logger(logger: logging.Logger, call_id: str, leg_id: str, label: str) -> LegLogger:
    return LegLogger(logger, {"call_id": call_id, "leg_id": leg_id, "leg_label": label})


class RepeatFilter(logging.Filter):
    """Rate-limits identical WARNING and ERROR lines (a handler filter).

    A line (same logger, level, message and exception type) passes the first time; the same
    line again within ``interval_s`` is dropped and counted; the first one after that passes
    with ``[N identical lines suppressed in the last S s]`` appended.  A flood of one failure
    (accept() failing with "Too many open files" thousands of times a second) costs one line a
    minute, not the disk.  At most ``max_keys`` different lines are remembered (oldest
    forgotten).  DEBUG and INFO lines always pass.
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[tuple[object, ...], list[float | int]] = OrderedDict()
        self.suppressed = 0  # lines dropped in all

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a bad format: let the handler report it as it always does
            return True
        exc_type = record.exc_info[0] if record.exc_info else None
        key = (record.name, record.levelno, text[:1000], exc_type)
        now = self.clock()
        entry = self._seen.get(key)
        if entry is not None:
            self._seen.move_to_end(key)
            first, dropped = entry
            if now - first < self.interval_s:
                entry[1] = int(dropped) + 1
                self.suppressed += 1
                return False
            self._seen[key] = [now, 0]
            if dropped:
                record.msg = f"{text} [{int(dropped)} identical lines suppressed in the last"
                record.msg += f" {now - first:.0f} s]"
                record.args = None
            return True
        self._seen[key] = [now, 0]
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return True


def install_repeat_filter(interval_s: float = 60.0) -> None:
    """Put a :class:`RepeatFilter` on every handler of the root logger (once each)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(interval_s))


def setup_logging(verbosity: int) -> None:
    """``-v`` INFO, ``-vv`` DEBUG; WARNING otherwise (the CLI prints its own progress).
    Repeated identical warnings and errors are rate-limited (:class:`RepeatFilter`)."""
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_repeat_filter()
