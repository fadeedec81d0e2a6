"""What happens, live: the event hub, the sink that stores and publishes, the webhooks.

* :mod:`.hub` — :class:`LiveHub`: every call's lifecycle, segments, gaps and digits as numbered
  events, fanned out to subscribers (the live API, the dashboards, webhooks); it keeps a ring of
  recent events for resuming clients and the active calls for the dashboards;
* :mod:`.events` — :class:`LiveEvent` and :class:`LiveFilter`: the event types, their JSON
  shapes, and which subscriber wants which;
* :mod:`.subscription` — :class:`Subscription`: one client's bounded queue (partials coalesced,
  finals never dropped, a client too slow for them closed) and the messages drained from it;
* :mod:`.tee` — :class:`PublishingStore`: the :class:`~bridge.call.TranscriptSink` that writes a
  call's facts to the transcript store and then publishes them to the hub;
* :mod:`.webhooks` — the webhook sender, one more subscriber, with a durable outbox.
"""

from .events import LiveEvent, LiveFilter
from .hub import CallState, LegState, LiveHub
from .subscription import Subscription

__all__ = ["CallState", "LegState", "LiveEvent", "LiveFilter", "LiveHub", "Subscription"]
