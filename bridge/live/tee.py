"""A store that also tells the live hub (and webhooks): the call lifecycle of in-process legs.

``transcribe_file`` and the leg pipeline write calls, legs and events to a
:class:`~storage.TranscriptStore`; wrapping it in :class:`PublishingStore` publishes the same
facts to the :class:`~bridge.live.LiveHub` once each is committed, so live clients never see a
call that REST cannot return.  Segments and gaps reach the hub through the leg's listener
(``hub.listener``), not through here.  DTMF digits of SIP calls come through :meth:`put_dtmf`
(``bridge.sip.ingest``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bridge.core.types import CallInfo, Gap, LegEvent, LegInfo, Segment
from storage import TranscriptStore

from .hub import LiveHub


class PublishingStore:
    """Forwards every call to ``store``; publishes lifecycle and ASR errors to ``hub``."""

    def __init__(
        self,
        store: TranscriptStore,
        hub: LiveHub,
        *,
        agent: str | None = None,
        on_call_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.agent = agent
        self.on_call_ended = on_call_ended
        self.call_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._legs: dict[str, LegInfo] = {}

    async def add_call(self, call: CallInfo) -> None:
        if self.agent is not None and call.agent is None:
            call = replace(call, agent=self.agent)
        await self.store.add_call(call)
        self.hub.call_started(call, agent=call.agent)
        if not self.call_id.done():
            self.call_id.set_result(call.call_id)

    async def add_leg(self, leg: LegInfo) -> None:
        await self.store.add_leg(leg)
        self._legs[leg.leg_id] = leg
        self.hub.leg_started(leg)

    async def end_leg(self, leg_id: str, *, ended_at_ms: int, duration_ms: int) -> None:
        await self.store.end_leg(leg_id, ended_at_ms=ended_at_ms, duration_ms=duration_ms)
        self._legs.pop(leg_id, None)  # one store serves every SIP call of a long run
        self.hub.leg_ended(leg_id, duration_ms)

    async def end_call(self, call_id: str, *, ended_at_ms: int, cause: str) -> None:
        await self.store.end_call(call_id, ended_at_ms=ended_at_ms, cause=cause)
        self.hub.call_ended(call_id, cause, ended_at_ms)
        if self.on_call_ended is not None:
            self.on_call_ended(call_id)

    def put_segment(self, segment: Segment) -> None:
        self.store.put_segment(segment)

    def put_gap(self, gap: Gap) -> None:
        self.store.put_gap(gap)

    def put_event(self, event: LegEvent) -> None:
        self.store.put_event(event)
        leg = self._legs.get(event.leg_id or "")
        if leg is not None and event.kind.startswith("asr."):
            self.hub.asr_event(leg, event.kind, event.detail)

    def put_dtmf(self, event: LegEvent, digit: str, duration_ms: int) -> None:
        """Store a ``dtmf`` event (``at_ms`` on its leg's clock) and publish the digit."""
        self.store.put_event(event)
        leg = self._legs.get(event.leg_id or "")
        if leg is not None:
            self.hub.dtmf(leg, digit, event.at_ms, duration_ms)

    async def flush(self) -> None:
        await self.store.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
