"""What happens, live: the event hub, the sink that stores and publishes, the webhooks.

* :mod:`.hub` — :class:`LiveHub`: every call's lifecycle, segments, gaps and digits as numbered
  events, fanned out to subscribers (the live API, the dashboards, webhooks) with bounded queues;
* :mod:`.tee` — :class:`PublishingStore`: the :class:`~bridge.call.TranscriptSink` that writes a
  call's facts to the transcript store and then publishes them to the hub;
* :mod:`.webhooks` — the webhook sender, one more subscriber, with a durable outbox.
"""

from .hub import CallState, LegState, LiveEvent, LiveFilter, LiveHub, Subscription

__all__ = ["CallState", "LegState", "LiveEvent", "LiveFilter", "LiveHub", "Subscription"]
