"""One live-API client's bounded queue of events, and the messages drained from it.

Sans-I/O: the hub offers events with plain calls on the event loop; the WebSocket adapter
(``bridge.http.live_ws``) turns ``on_ready`` into a wake-up and drains.

Messages
--------
A live-API message is a JSON array of events, oldest first: :meth:`Subscription.drain_message`
joins the pre-serialised texts of everything the client has queued into ``[e1,e2,...]`` (no
re-encoding), so a client woken after a burst of events gets one message, not one per event.  A
message holds at most ``max_events`` events and about ``max_chars`` characters (always at least
one event); the rest follows in the next message.

Queue and overflow rule
-----------------------
* A partial segment replaces the queued partial of the same ``(leg_id, seq)`` (its text is the
  whole utterance so far, so only the newest revision matters); a final removes it.  At most
  ``max_partials`` partials wait; past that the oldest queued partial is dropped (its final, or a
  newer revision, follows).
* Finals, gaps and lifecycle events are never dropped.  When more than ``max_pending`` of them
  wait, the client is too slow: the subscription is closed with reason ``too-slow`` and the
  client may resume from its last ``seq`` (the hub's ring has what it missed).
* Events are shared, immutable objects serialised once at publish time, so memory per client is
  the queue of references (bounded above) and publishing costs O(clients) dict operations: a slow
  client never slows a leg or another client.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from .events import LiveEvent, LiveFilter

if TYPE_CHECKING:
    from .hub import LiveHub

DEFAULT_MAX_PENDING = 2_000
DEFAULT_MAX_PARTIALS = 500
DEFAULT_MESSAGE_EVENTS = 1_000
DEFAULT_MESSAGE_CHARS = 256 * 1024


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
