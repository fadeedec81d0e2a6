"""A pool of ASR backends: which server each leg's realtime session runs on.

One Voxtral server holds tens of legs, not hundreds, so a call centre runs several
(``[[asr.backends]]``; ``asr.url`` is the pool of one).  The rules, all here:

* **Placement.**  A new leg goes to the backend with the most free budget (``max_legs`` less the
  legs placed on it; a backend without ``max_legs`` is unlimited) among the healthy ones that
  have no lagging leg; then to the one with the fewest legs, then to the one listed first.
* **Health** comes from the legs' own errors (a connection refused or dropped, a stall, a
  protocol violation, a retryable server error: :meth:`AsrPool.failed`) and from a probe every
  few seconds (``GET /health`` and ``GET /v1/models``: :meth:`AsrPool.watch`); a text step on
  any leg, or a passing probe, makes the backend healthy again.
* **Failover.**  A leg whose backend failed is :meth:`moved <AsrPool.move>` to the best other
  healthy backend with budget free and reconnects there at once through the client's reconnect
  + replay path (``AsrStream``: the audio with no step yet is sent again; nothing lost, nothing
  twice).  With no such backend it stays, buffering up to ``asr.max_buffer_s`` while it
  retries, rather than overload a full server.  Legs do not move back when the backend
  recovers: it takes new legs.
* **Admission** (SIP 503, WHIP 503, media-fork refusals) counts the free budget of the healthy
  backends without a lagging leg.  With no backend healthy at all every backend counts, as one
  server did before there were pools: a short outage of every server is buffered per leg
  (``asr.max_buffer_s``), and refusing calls would lose recordings the buffer would have kept.

The pool itself never does I/O except in :meth:`AsrPool.watch`, the probe loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.asr.endpoint import AsrEndpoint
from bridge.config.backends import default_name
from bridge.core.step_clock import StepClock
from bridge.watchers import Watchers

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 5.0


@dataclass(eq=False)
class Backend:
    """One ASR server of the pool and what the bridge knows of it now."""

    name: str
    endpoint: AsrEndpoint
    legs: int = 0  # legs placed on it and not finished or moved away
    lagging: int = 0  # of those, legs whose text is behind real time (Leg.lagging)
    healthy: bool = True
    problem: str | None = None  # why it is unhealthy: the last error or probe line
    failures: int = 0  # times it went from healthy to unhealthy

    @property
    def free(self) -> float:
        """Legs it can still take (``inf``: no budget set)."""
        budget = self.endpoint.max_legs
        return math.inf if budget is None else budget - self.legs

    def describe(self) -> dict[str, Any]:
        """What the supervisor view and ``GET /api/v1/asr/backends`` show (no API key)."""
        return {
            "name": self.name,
            "url": self.endpoint.url,
            "model": self.endpoint.model,
            "dialect": self.endpoint.dialect,
            "healthy": self.healthy,
            "problem": self.problem,
            "legs": self.legs,
            "max_legs": self.endpoint.max_legs,
            "lagging": self.lagging,
            "failures": self.failures,
        }


class AsrPool:
    """The backends, their budgets and health, and where each leg runs.

    Args:
        endpoints: the servers, in the order ties are broken.  They must share a dialect (a
            leg's session object is of one, and it moves between them) and a step clock
            (``delay_ms`` and the model files): word times are computed with it.
        names: one per endpoint for logs, metrics and the supervisor view (default host:port).
    """

    def __init__(self, endpoints: Sequence[AsrEndpoint], names: Sequence[str] = ()) -> None:
        if not endpoints:
            raise ValueError("an ASR pool needs at least one backend")
        names = list(names) or [default_name(e.url) for e in endpoints]
        if len(names) != len(endpoints):
            raise ValueError("one name per ASR backend")
        first = endpoints[0]
        for endpoint in endpoints[1:]:
            if endpoint.dialect != first.dialect:
                raise ValueError(
                    f"ASR backend {endpoint.url} speaks the {endpoint.dialect} dialect and "
                    f"{first.url} the {first.dialect} one: every backend of a pool must speak one"
                )
            if (endpoint.delay_ms, endpoint.model_files) != (first.delay_ms, first.model_files):
                raise ValueError(
                    f"ASR backend {endpoint.url} has another step clock than {first.url}: every "
                    "backend must serve the same model files at the same delay"
                )
        self.backends = [Backend(n, e) for n, e in zip(names, endpoints, strict=True)]
        self._changed = Watchers("ASR pool")

    @classmethod
    def of(cls, target: AsrEndpoint | AsrPool) -> AsrPool:
        """``target`` itself, or the pool of one server every caller with that endpoint shares
        (so its ``max_legs`` counts every leg on it)."""
        return target if isinstance(target, AsrPool) else _lone(target)

    # -- what every backend shares -------------------------------------------------------------

    @property
    def first(self) -> AsrEndpoint:
        return self.backends[0].endpoint

    @property
    def clock(self) -> StepClock:
        return self.first.clock

    @property
    def delay_ms(self) -> int:
        return self.first.delay_ms

    @property
    def dialect(self) -> str:
        return self.first.dialect

    @property
    def language(self) -> str | None:
        return self.first.language

    @property
    def max_legs(self) -> int | None:
        """The budget admission counts (None: unlimited): the sum over :meth:`_counted`."""
        budgets = [b.endpoint.max_legs for b in self._counted()]
        return None if None in budgets else sum(b or 0 for b in budgets)

    def summary(self) -> str:
        """``ws://h:p/v1/realtime``, or ``2 ASR servers (gpu-a, gpu-b)``."""
        if len(self.backends) == 1:
            return self.first.url
        return f"{len(self.backends)} ASR servers ({', '.join(b.name for b in self.backends)})"

    # -- placement -----------------------------------------------------------------------------

    def place(self) -> Backend:
        """Count a new leg on the best backend (never ``None``: with nowhere good to go, the
        least bad, so the leg buffers and retries as a single server's leg would)."""
        backend = self._best()
        backend.legs += 1
        return backend

    def release(self, backend: Backend) -> None:
        """A leg placed on ``backend`` is over."""
        backend.legs = max(0, backend.legs - 1)

    def move(self, backend: Backend, reason: str) -> Backend:
        """``backend`` failed a leg (``reason``): mark it, and place the leg again elsewhere if
        there is anywhere better.  Returns the leg's backend from now on."""
        self.failed(backend, reason)
        target = self._best(avoid=backend)
        if target is backend or not target.healthy or target.free < 1:
            # Nowhere healthy with room: stay, buffering, and let the client's backoff pace the
            # retries (a leg squeezed onto a full server would slow every leg there).
            return backend
        backend.legs = max(0, backend.legs - 1)
        target.legs += 1
        return target

    def _best(self, avoid: Backend | None = None) -> Backend:
        def rank(b: Backend) -> tuple[bool, bool, bool, float, int]:
            return (b.healthy, b is not avoid, b.lagging == 0, b.free, -b.legs)

        # max() keeps the first of equals: the order backends are listed in breaks ties.
        return max(self.backends, key=rank)

    # -- health --------------------------------------------------------------------------------

    def failed(self, backend: Backend, reason: str) -> None:
        """A leg's error or a probe says ``backend`` cannot serve now."""
        backend.problem = reason
        if backend.healthy:
            backend.healthy = False
            backend.failures += 1
            logger.warning("ASR backend %s is unhealthy: %s", backend.name, reason)
            self._changed()

    def working(self, backend: Backend) -> None:
        """A text step came from ``backend``, or its probe passed."""
        backend.problem = None
        if not backend.healthy:
            backend.healthy = True
            logger.info("ASR backend %s is healthy again", backend.name)
            self._changed()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when a backend's health changes (admission may change with it:
        SIP tells its workers at once)."""
        self._changed.add(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        self._changed.remove(callback)

    async def watch(self, stop: asyncio.Event, interval_s: float = PROBE_INTERVAL_S) -> None:
        """Probe every backend every ``interval_s`` until ``stop`` (all at once, each within
        the interval)."""
        from bridge.asr.probe import probe_health

        while not stop.is_set():
            problems = await asyncio.gather(
                *(probe_health(b.endpoint, timeout_s=interval_s) for b in self.backends),
                return_exceptions=True,  # a server's nonsense must not stop the probes
            )
            for backend, problem in zip(self.backends, problems, strict=True):
                if problem is None:
                    self.working(backend)
                elif isinstance(problem, Exception):
                    logger.exception(
                        "probe of ASR backend %s failed", backend.name, exc_info=problem
                    )
                    self.failed(backend, f"its probe failed: {problem!r}")
                else:
                    self.failed(backend, str(problem))
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    # -- admission -----------------------------------------------------------------------------

    def _counted(self) -> list[Backend]:
        healthy = [b for b in self.backends if b.healthy]
        return healthy or self.backends

    def admission_problem(self, new_legs: int = 1) -> str | None:
        """Why the pool cannot take ``new_legs`` more legs now (None: it can)."""
        counted = self._counted()
        open_ = [b for b in counted if b.lagging == 0]
        if not open_:
            lagging = sum(b.lagging for b in counted)
            where = "the ASR server is" if len(self.backends) == 1 else "every ASR server is"
            return f"{where} behind real time on {lagging} live leg(s)"
        if sum(b.free for b in open_) >= new_legs:
            return None
        if len(self.backends) == 1:
            return f"transcription capacity is full ({self.first.max_legs} legs)"
        budget = sum(b.endpoint.max_legs or 0 for b in open_)
        return (
            f"transcription capacity is full ({budget} legs on {len(open_)} of "
            f"{len(self.backends)} ASR servers that are healthy and keeping up)"
        )


@functools.cache
def _lone(endpoint: AsrEndpoint) -> AsrPool:
    return AsrPool([endpoint])


#: What callers hand a leg: one server, or a pool of them.
AsrTarget = AsrEndpoint | AsrPool
