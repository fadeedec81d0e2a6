"""The live event hub: calls, legs, segments and gaps as they happen, to every live-API client.

Sans-I/O: publishers call plain synchronous methods on the event loop (a leg's listener, the call
lifecycle); subscribers drain a :class:`Subscription` whose ``on_ready`` callback the WebSocket
adapter (``bridge.http.live_ws``) turns into a wake-up.  No sockets, no tasks, no clock reads
except through the injected ``clock_ms``.

Wire format
-----------
Each event is serialised to JSON once, at publish time (``LiveEvent.text``), and that one string
is shared by every subscriber.  A live-API message is a JSON array of events, oldest first:
:meth:`Subscription.drain_message` joins the pre-serialised texts of everything the client has
queued into ``[e1,e2,...]`` (no re-encoding), so a client woken after a burst of events gets one
message, not one per event.  A message holds at most ``max_events`` events and about
``max_chars`` characters (always at least one event); the rest follows in the next message.

Sequence numbers
----------------
Every published event gets the next hub-wide ``seq`` (1, 2, 3, ...).  A client remembers the last
``seq`` it saw and reconnects with ``resume_from=SEQ``: the hub replays the events after it from
its ring of recent events (the last ``ring_size`` events).  If the resume point is older than the
ring, or newer than the hub's ``seq`` (the client saw a previous run of the bridge: a restart), the
client gets one ``resync`` event instead: it re-reads the calls over REST and goes on from the
``seq`` in that event.  So a final is never silently lost.

Queue and overflow rule (per subscriber)
----------------------------------------
* A partial segment replaces the queued partial of the same ``(leg_id, seq)`` (its text is the
  whole utterance so far, so only the newest revision matters); a final removes it.  At most
  ``max_partials`` partials wait; past that the oldest queued partial is dropped (its final, or a
  newer revision, follows).
* Finals, gaps and lifecycle events are never dropped.  When more than ``max_pending`` of them
  wait, the client is too slow: the subscription is closed with reason ``too-slow`` and the
  client may resume from its last ``seq`` (the ring has what it missed).
* Events are shared, immutable objects serialised once at publish time, so memory per client is
  the queue of references (bounded above) and publishing costs O(clients) dict operations: a slow
  client never slows a leg or another client.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.core.types import CallInfo, Gap, LegInfo, Segment
from bridge.export import gap_json, leg_json, segment_json

logger = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 10_000
DEFAULT_MAX_PENDING = 2_000
DEFAULT_MAX_PARTIALS = 500
DEFAULT_MESSAGE_EVENTS = 1_000
DEFAULT_MESSAGE_CHARS = 256 * 1024

EVENT_TYPES = (
    "call.started",
    "call.ended",
    "leg.started",
    "leg.ended",
    "segment.partial",
    "segment.final",
    "gap",
    "dtmf",
    "asr.health",
    "resync",
)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One published event.  ``text`` is its JSON, made once and sent to every client."""

    seq: int
    type: str
    call_id: str
    agent: str | None
    segment_key: tuple[str, int] | None  # (leg_id, seq) of a segment event, else None
    text: str

    @property
    def partial_key(self) -> tuple[str, int] | None:
        return self.segment_key if self.type == "segment.partial" else None

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.text)
        return value


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """Which events a subscriber wants: one call, one agent's calls, or (both None) all."""

    call_id: str | None = None
    agent: str | None = None

    def matches(self, event: LiveEvent) -> bool:
        if event.type == "resync":
            return True
        if self.call_id is not None and event.call_id != self.call_id:
            return False
        return self.agent is None or event.agent == self.agent


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


class Subscription:
    """One client's bounded queue (module docstring).  Drain with :meth:`drain`."""

    def __init__(
        self,
        hub: LiveHub,
        live_filter: LiveFilter,
        *,
        max_pending: int,
        max_partials: int,
    ) -> None:
        self.hub = hub
        self.filter = live_filter
        self.max_pending = max_pending
        self.max_partials = max_partials
        self.on_ready: Callable[[], None] | None = None
        self.closed_reason: str | None = None
        self.coalesced = 0
        self.dropped_partials = 0
        self._queue: OrderedDict[tuple[str, int] | int, LiveEvent] = OrderedDict()
        self._partials = 0

    @property
    def pending(self) -> int:
        """Events waiting (partials included)."""
        return len(self._queue)

    def offer(self, event: LiveEvent, *, replay: bool = False) -> None:
        """Queue ``event`` by the overflow rule; ``replay`` events (from the ring) skip the bound:
        they are references to the ring's own objects."""
        if self.closed_reason is not None or not self.filter.matches(event):
            return
        key = event.partial_key
        if key is not None:
            if self._queue.pop(key, None) is not None:
                self.coalesced += 1
                self._partials -= 1
            elif self._partials >= self.max_partials:
                for old_key in self._queue:
                    if isinstance(old_key, tuple):
                        del self._queue[old_key]
                        self._partials -= 1
                        self.dropped_partials += 1
                        break
            self._queue[key] = event
            self._partials += 1
        else:
            if event.type == "segment.final" and event.segment_key is not None:
                if self._queue.pop(event.segment_key, None) is not None:
                    self._partials -= 1
                    self.coalesced += 1
            self._queue[event.seq] = event
            if not replay and len(self._queue) - self._partials > self.max_pending:
                self.close("too-slow")
                return
        if self.on_ready is not None:
            self.on_ready()

    def drain(self, limit: int = 1000) -> list[LiveEvent]:
        """Up to ``limit`` queued events, oldest first."""
        out: list[LiveEvent] = []
        while self._queue and len(out) < limit:
            key, event = self._queue.popitem(last=False)
            if isinstance(key, tuple):
                self._partials -= 1
            out.append(event)
        return out

    def drain_message(
        self,
        max_events: int = DEFAULT_MESSAGE_EVENTS,
        max_chars: int = DEFAULT_MESSAGE_CHARS,
    ) -> str | None:
        """What is queued as one live-API message: a JSON array of the events' shared texts,
        oldest first, or ``None`` when nothing waits.  At most ``max_events`` events and, past
        the first, no more than ``max_chars`` characters; the rest stays queued (in order, still
        coalescing) for the next message."""
        queue = self._queue
        if not queue:
            return None
        if len(queue) <= max_events:  # the usual case: everything, in one pass
            texts = [event.text for event in queue.values()]
            if len(texts) == 1 or sum(map(len, texts)) + len(texts) + 1 <= max_chars:
                queue.clear()
                self._partials = 0
                return "[" + ",".join(texts) + "]"
        texts = []
        size = 2
        while queue and len(texts) < max_events:
            key, event = queue.popitem(last=False)
            size += len(event.text) + 1
            if texts and size > max_chars:
                queue[key] = event  # back to the front: the next message starts with it
                queue.move_to_end(key, last=False)
                break
            if isinstance(key, tuple):
                self._partials -= 1
            texts.append(event.text)
        return "[" + ",".join(texts) + "]"

    def close(self, reason: str) -> None:
        """Stop queueing; the adapter closes the socket with ``reason``."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self._queue.clear()
            self._partials = 0
            self.hub.unsubscribe(self)
            if reason == "too-slow":
                self.hub.slow_disconnects += 1
            if self.on_ready is not None:
                self.on_ready()


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
        self, live_filter: LiveFilter = LiveFilter(), *, resume_from: int | None = None
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
        text = json.dumps(
            {
                "seq": self.seq,
                "type": "resync",
                "resume_from": resume_from,
                "detail": (
                    f"events after seq {resume_from} are no longer kept (the hub keeps the last "
                    f"{self.ring_size}); re-read the calls over REST and continue from seq "
                    f"{self.seq}"
                ),
            }
        )
        return LiveEvent(self.seq, "resync", "", None, None, text)

    # -- state for dashboards ---------------------------------------------------------------------

    def active_calls(self) -> list[CallState]:
        return list(self._calls.values())

    def agent_of(self, call_id: str) -> str | None:
        return self._agents.get(call_id)

    def snapshot(self, live_filter: LiveFilter = LiveFilter()) -> dict[str, Any]:
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
                            **_leg_json(leg.info, state.info.started_at_ms),
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
        self._publish(
            "call.started",
            call.call_id,
            {
                "call": {
                    "id": call.call_id,
                    "source": call.source.value,
                    "title": call.title,
                    "agent": agent,
                    "started_at_ms": call.started_at_ms,
                }
            },
        )

    def call_ended(self, call_id: str, cause: str, ended_at_ms: int) -> None:
        state = self._calls.pop(call_id, None)
        if state is not None:
            for leg_id in state.legs:
                self._leg_call.pop(leg_id, None)
        started = state.info.started_at_ms if state else None
        self._publish(
            "call.ended",
            call_id,
            {
                "call": {
                    "id": call_id,
                    "ended_at_ms": ended_at_ms,
                    "end_cause": cause,
                    "duration_ms": None if started is None else ended_at_ms - started,
                }
            },
        )
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
        self._publish("leg.started", leg.call_id, {"leg": _leg_json(leg, call_start)})

    def leg_ended(self, leg_id: str, duration_ms: int) -> None:
        call_id = self._leg_call.get(leg_id, "")
        state = self._calls.get(call_id)
        if state is not None:
            state.legs.pop(leg_id, None)
        self._publish("leg.ended", call_id, {"leg": {"id": leg_id, "duration_ms": duration_ms}})

    def segment(self, leg: LegInfo, segment: Segment) -> None:
        state = self._leg_state(leg)
        if state is not None:
            state.latest_text = segment.text
            state.latest_final = segment.final
            state.latest_start_ms = segment.start_ms
            # How far the text trails the audio, assuming the leg's audio arrives in real time.
            state.lag_ms = max(0, self.clock_ms() - leg.started_at_ms - segment.end_ms)
        kind = "segment.final" if segment.final else "segment.partial"
        payload = {"segment": segment_json(segment, leg.role.value)}
        self._publish(kind, segment.call_id, payload, segment_key=(segment.leg_id, segment.seq))

    def gap(self, leg: LegInfo, gap: Gap) -> None:
        state = self._leg_state(leg)
        self.gap_ms_total += gap.duration_ms
        if state is not None:
            state.gaps += 1
        self._publish(
            "gap",
            gap.call_id,
            {"gap": {**gap_json(gap), "role": leg.role.value}},
        )

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
        self._publish(
            "asr.health",
            leg.call_id,
            {
                "health": {
                    "leg_id": leg.leg_id,
                    "error": detail,
                    "errors": state.errors if state else 1,
                }
            },
        )

    def dtmf(self, leg: LegInfo, digit: str, at_ms: int, duration_ms: int) -> None:
        self._publish(
            "dtmf",
            leg.call_id,
            {
                "dtmf": {
                    "leg_id": leg.leg_id,
                    "digit": digit,
                    "at_ms": at_ms,
                    "duration_ms": duration_ms,
                }
            },
        )

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
        body = {"seq": self.seq, "type": kind, "call_id": call_id, "at_ms": self.clock_ms()}
        body.update(payload)
        event = LiveEvent(
            self.seq,
            kind,
            call_id,
            self._agents.get(call_id),
            segment_key,
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        )
        self.counts[kind] += 1
        self._ring.append(event)
        while len(self._ring) > self.ring_size:
            self._ring.popleft()
        for sub in list(self._subscribers):
            sub.offer(event)
        logger.debug("live event %d %s call=%s", self.seq, kind, call_id)
        return event


def _leg_json(leg: LegInfo, call_started_at_ms: int) -> dict[str, Any]:
    return leg_json(leg, max(0, leg.started_at_ms - call_started_at_ms))
