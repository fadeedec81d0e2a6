"""What the bridge's services say about whether it can do its job: ``/ready`` and ``/metrics``.

A service registers a *check* (a function that returns ``None`` when all is well, or one line
naming the problem and what to do) and counts its crashes here; the HTTP app reads them at
request or scrape time, so nothing is polled and nothing is stale.  Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

Check = Callable[[], str | None]


class Health:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        # (component, cause) -> count, e.g. ("sip-worker-0", "SIGABRT")
        self.crashes: Counter[tuple[str, str]] = Counter()

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    def problems(self) -> list[str]:
        """Every registered check that fails, in registration order."""
        return [problem for check in self._checks.values() if (problem := check()) is not None]

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A Prometheus gauge ``bridge_<name>`` read at scrape time."""
        self._gauges[name] = (help_text, read)

    def remove_gauge(self, name: str) -> None:
        self._gauges.pop(name, None)

    def gauges(self) -> list[tuple[str, str, float]]:
        return [(name, text, read()) for name, (text, read) in self._gauges.items()]
