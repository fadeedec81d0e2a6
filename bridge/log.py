"""Logging policy and the adapter that names the call and leg on every line.

Levels (as websockets documents them):

* ERROR: a leg or call lost, or a bug;
* WARNING: degraded but going on (ASR reconnects, buffer overflow gaps, unsolicited ``done``);
* INFO: lifecycle - calls and legs start/stop, ASR sessions open/close, the config summary;
* DEBUG: protocol events.  Audio and transcript text are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
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


def setup_logging(verbosity: int) -> None:
    """``-v`` INFO, ``-vv`` DEBUG; WARNING otherwise (the CLI prints its own progress)."""
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
