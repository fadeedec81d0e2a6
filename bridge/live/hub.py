"""The live event hub: calls, legs, segments and gaps as they happen, to every live-API client.

Sans-I/O: publishers call plain synchronous methods on the event loop (a leg's listener, the call
lifecycle); subscribers drain a :class:`~bridge.live.subscription.Subscription` whose
``on_ready`` callback the WebSocket adapter (``bridge.http.live_ws``) turns into a wake-up.  No
sockets, no tasks, no clock reads except through the injected ``clock_ms``.  The hub numbers and
fans out; what an event looks like is :mod:`.events`, how a slow client is bounded is
:mod:`.subscription`.

Sequence numbers
----------------
Every published event gets the next hub-wide ``seq`` (1, 2, 3, ...).  A client remembers the last
``seq`` it saw and reconnects with ``resume_from=SEQ``: the hub replays the events after it from
its ring of recent events (the last ``ring_size`` events).  If the resume point is older than the
ring, or newer than the hub's ``seq`` (the client saw a previous run of the bridge: a restart), the
client gets one ``resync`` event instead: it re-reads the calls over REST and goes on from the
``seq`` in that event.  So a final is never silently lost.

The hub also keeps the active calls with the latest line and ASR health of each leg
(:meth:`LiveHub.snapshot`, for the dashboards) and counters for ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.core.types import CallInfo, Gap, LegInfo, Segment

from . import events
from .events import EVENT_TYPES, LiveEvent, LiveFilter
from .subscription import DEFAULT_MAX_PARTIALS, DEFAULT_MAX_PENDING, Subscription

logger = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 10_000
EVERYTHING = LiveFilter()  # every call's events


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class LegState:
    info: LegInfo
    latest_text: str = ""
    latest_final: bool = True
    latest_start_ms: int = 0
    lag_ms: int | None = None
    gaps: int = 0
    errors: int = 0


@dataclass(slots=True)
class CallState:
    info: CallInfo
    agent: str | None
    legs: dict[str, LegState] = field(default_factory=dict)


class LiveHub:
    """The in-process event bus between publishers (legs, calls) and live-API subscribers."""

    def __init__(
        self,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_partials: int = DEFAULT_MAX_PARTIALS,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.ring_size = ring_size
        self.max_pending = max_pending
        self.max_partials = max_partials
        self.clock_ms = clock_ms
        self.seq = 0
        self._ring: deque[LiveEvent] = deque()
        self._subscribers: set[Subscription] = set()
        self._calls: dict[str, CallState] = {}
        self._leg_call: dict[str, str] = {}
        self._agents: dict[str, str | None] = {}  # call id -> agent, kept after the call ends
        self.counts: dict[str, int] = dict.fromkeys(EVENT_TYPES, 0)
        self.slow_disconnects = 0
        self.asr_events: dict[str, int] = {}
        self.asr_errors: dict[str, int] = {}  # by error code
        self.gap_ms_total = 0

    # -- subscribers ------------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self, live_filter: LiveFilter = EVERYTHING, *, resume_from: int | None = None
    ) -> Subscription:
        """A new subscription; with ``resume_from``, the ring's events after it are queued first
        (or one ``resync`` event when the ring no longer reaches back that far)."""
        sub = Subscription(
            self, live_filter, max_pending=self.max_pending, max_partials=self.max_partials
        )
        if resume_from is not None and resume_from > self.seq:
            # A seq this hub never gave: the client saw a previous run of the bridge.
            sub.offer(self._resync_event(resume_from), replay=True)
        elif resume_from is not None and resume_from < self.seq:
            oldest = self._ring[0].seq if self._ring else self.seq + 1
            if resume_from < 0 or resume_from + 1 < oldest:
                sub.offer(self._resync_event(resume_from), replay=True)
            else:
                start = len(self._ring) - (self.seq - resume_from)
                for i in range(max(start, 0), len(self._ring)):
                    sub.offer(self._ring[i], replay=True)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def _resync_event(self, resume_from: int) -> LiveEvent:
        text = events.resync_text(self.seq, resume_from, self.ring_size)
        return LiveEvent(self.seq, "resync", "", None, None, text)

    # -- state for dashboards ---------------------------------------------------------------------

    def active_calls(self) -> list[CallState]:
        return list(self._calls.values())

    def agent_of(self, call_id: str) -> str | None:
        return self._agents.get(call_id)

    def snapshot(self, live_filter: LiveFilter = EVERYTHING) -> dict[str, Any]:
        """Active calls with the latest line per leg and ASR health, and the ``seq`` they are at:
        a client renders this, then subscribes with ``resume_from=seq``."""
        calls = []
        now = self.clock_ms()
        for state in self._calls.values():
            if live_filter.call_id is not None and state.info.call_id != live_filter.call_id:
                continue
            if live_filter.agent is not None and state.agent != live_filter.agent:
                continue
            calls.append(
                {
                    "id": state.info.call_id,
                    "source": state.info.source.value,
                    "title": state.info.title,
                    "agent": state.agent,
                    "started_at_ms": state.info.started_at_ms,
                    "elapsed_ms": max(0, now - state.info.started_at_ms),
                    "legs": [
                        {
                            **events.leg_fields(leg.info, state.info.started_at_ms),
                            "latest": {
                                "text": leg.latest_text,
                                "final": leg.latest_final,
                                "start_ms": leg.latest_start_ms,
                            },
                            "health": {
                                "lag_ms": leg.lag_ms,
                                "gaps": leg.gaps,
                                "errors": leg.errors,
                            },
                        }
                        for leg in state.legs.values()
                    ],
                }
            )
        return {"seq": self.seq, "calls": calls}

    # -- publishers (sync, on the event loop) -----------------------------------------------------

    def call_started(self, call: CallInfo, *, agent: str | None = None) -> None:
        self._calls[call.call_id] = CallState(call, agent)
        self._agents[call.call_id] = agent
        self._publish("call.started", call.call_id, events.call_started(call, agent))

    def call_ended(self, call_id: str, cause: str, ended_at_ms: int) -> None:
        state = self._calls.pop(call_id, None)
        if state is not None:
            for leg_id in state.legs:
                self._leg_call.pop(leg_id, None)
        started = state.info.started_at_ms if state else None
        payload = events.call_ended(call_id, cause, ended_at_ms, started)
        self._publish("call.ended", call_id, payload)
        if len(self._agents) > 4 * self.ring_size:  # forget the agents of long-gone calls
            for old in list(self._agents)[: self.ring_size]:
                if old not in self._calls:
                    del self._agents[old]

    def leg_started(self, leg: LegInfo) -> None:
        state = self._calls.get(leg.call_id)
        call_start = leg.started_at_ms
        if state is not None:
            state.legs[leg.leg_id] = LegState(leg)
            call_start = state.info.started_at_ms
        self._leg_call[leg.leg_id] = leg.call_id
        self._publish("leg.started", leg.call_id, events.leg_started(leg, call_start))

    def leg_ended(self, leg_id: str, duration_ms: int) -> None:
        call_id = self._leg_call.get(leg_id, "")
        state = self._calls.get(call_id)
        if state is not None:
            state.legs.pop(leg_id, None)
        self._publish("leg.ended", call_id, events.leg_ended(leg_id, duration_ms))

    def segment(self, leg: LegInfo, segment: Segment) -> None:
        state = self._leg_state(leg)
        if state is not None:
            state.latest_text = segment.text
            state.latest_final = segment.final
            state.latest_start_ms = segment.start_ms
            # How far the text trails the audio, assuming the leg's audio arrives in real time.
            state.lag_ms = max(0, self.clock_ms() - leg.started_at_ms - segment.end_ms)
        kind = "segment.final" if segment.final else "segment.partial"
        payload = events.segment(leg, segment)
        self._publish(kind, segment.call_id, payload, segment_key=(segment.leg_id, segment.seq))

    def gap(self, leg: LegInfo, gap: Gap) -> None:
        state = self._leg_state(leg)
        self.gap_ms_total += gap.duration_ms
        if state is not None:
            state.gaps += 1
        self._publish("gap", gap.call_id, events.gap(leg, gap))

    def asr_event(self, leg: LegInfo, kind: str, detail: str) -> None:
        """A stored ASR event of a leg (``asr.session``, ``asr.error``, ...): counted for metrics;
        errors also count in the supervisor view's health and are published as ``asr.health``."""
        self.asr_events[kind] = self.asr_events.get(kind, 0) + 1
        if kind != "asr.error":
            return
        code = detail.partition(":")[0].strip() or "unknown"
        self.asr_errors[code] = self.asr_errors.get(code, 0) + 1
        state = self._leg_state(leg)
        if state is not None:
            state.errors += 1
        errors = state.errors if state else 1
        self._publish("asr.health", leg.call_id, events.asr_health(leg, detail, errors))

    def dtmf(self, leg: LegInfo, digit: str, at_ms: int, duration_ms: int) -> None:
        self._publish("dtmf", leg.call_id, events.dtmf(leg, digit, at_ms, duration_ms))

    def listener(self, leg: LegInfo, item: Segment | Gap) -> None:
        """A ``bridge.leg.Listener``: pass ``listener=hub.listener`` to a Leg."""
        if isinstance(item, Gap):
            self.gap(leg, item)
        else:
            self.segment(leg, item)

    def events_since(self, seq: int) -> Iterable[LiveEvent]:
        """Ring events after ``seq`` (for tests and diagnostics)."""
        return (e for e in self._ring if e.seq > seq)

    # -- internals --------------------------------------------------------------------------------

    def _leg_state(self, leg: LegInfo) -> LegState | None:
        state = self._calls.get(leg.call_id)
        return None if state is None else state.legs.get(leg.leg_id)

    def _publish(
        self,
        kind: str,
        call_id: str,
        payload: dict[str, Any],
        *,
        segment_key: tuple[str, int] | None = None,
    ) -> LiveEvent:
        self.seq += 1
        text = events.encode(self.seq, kind, call_id, self.clock_ms(), payload)
        event = LiveEvent(self.seq, kind, call_id, self._agents.get(call_id), segment_key, text)
        self.counts[kind] += 1
        self._ring.append(event)
        while len(self._ring) > self.ring_size:
            self._ring.popleft()
        for sub in list(self._subscribers):
            sub.offer(event)
        logger.debug("live event %d %s call=%s", self.seq, kind, call_id)
        return event
