"""Webhooks: an HTTP POST on every final segment and on call end, signed, stored until delivered.

The sender is one more :class:`~bridge.live.LiveHub` subscriber (``all`` calls).  Each event it
delivers is first put in the *outbox* (:class:`storage.outbox.WebhookOutbox`, a table in the
transcript store's SQLite file), then POSTed; the row is deleted once the receiver answered 2xx.
So a receiver that is down for hours, or a restart of the bridge, loses nothing: the rows are
retried with backoff (``first_backoff_s`` doubling to ``max_backoff_s``) until ``max_age_s``
(default 24 h), then given up with an ERROR line.  The outbox is bounded (``max_rows``; when it is
full the oldest rows are dropped, counted and logged) and its depth is the metric
``bridge_webhook_outbox_depth``.

Order: the events of one call go out in the order they happened; a call's next event waits until
the previous one was delivered or given up.  Different calls do not wait for each other, except
that a connection failure (the receiver is unreachable) pauses the whole sender for the backoff.

Each POST body is JSON: the live event (``seq``, ``type``, ``call_id``, payload) plus, on
``call.ended``, ``links`` to the call, its dashboard page and its exports.  Headers::

    Content-Type: application/json
    X-Bridge-Event: segment.final | call.ended
    X-Bridge-Delivery: <outbox id>      (the same on every retry, unique across restarts:
                                         receivers can de-duplicate)
    X-Bridge-Signature: sha256=<hex>    HMAC-SHA256 of the raw body with the shared secret

Answers: 2xx delivered.  A redirect (3xx) is *not* followed (a POST must not turn into a GET
somewhere else, nor its body go to another URL): it is a failure, logged with its ``Location``
(fix ``BRIDGE_WEBHOOK_URL``), and retried like a connection error, 5xx, 408 or 429.  Any other
4xx means the receiver refuses this event: it is logged and dropped, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.errors import StorageError
from storage.outbox import OutboxItem, WebhookOutbox

from .events import LiveEvent, LiveFilter
from .hub import LiveHub
from .subscription import Subscription

logger = logging.getLogger(__name__)

DELIVERED_TYPES = ("segment.final", "call.ended")
RETRIED_4XX = (408, 429)
DROP_LOG_INTERVAL_S = 60.0


def sign(secret: str, body: bytes) -> str:
    """The ``X-Bridge-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


@dataclass(frozen=True, slots=True)
class PostResult:
    """What one POST got: ``status`` None when no HTTP answer came (connection failed)."""

    status: int | None
    error: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry(self) -> bool:
        """Worth trying again later (else the receiver refused this event for good)."""
        status = self.status
        return (
            status is None
            or status < 200
            or 300 <= status < 400
            or status >= 500
            or (status in RETRIED_4XX)
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows 301/302/303 for a POST as a GET without the body: never do that."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class Webhooks:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        base_url: str,
        store: Any = None,
        db_path: Path | None = None,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 300.0,
        max_age_s: float = 24 * 3600.0,
        max_rows: int = 100_000,
        timeout_s: float = 10.0,
    ) -> None:
        """``store`` (a :class:`~storage.TranscriptStore`) or ``db_path``: the SQLite file that
        keeps the outbox; neither: an outbox in memory (lost on restart)."""
        self.url = url
        self.secret = secret
        self.base_url = base_url.rstrip("/")
        self.db_path = db_path if db_path is not None else getattr(store, "path", None)
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_age_s = max_age_s
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.delivered = 0
        self.failed = 0  # refused by the receiver (4xx) or given up after max_age_s
        self.dropped = 0  # pushed out of a full outbox
        self.outbox: WebhookOutbox | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_seq: int | None = None
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._last_drop_log = 0.0
        self._next_expiry = 0.0  # monotonic time of the next look for events past max_age_s

    def attach(self, hub: LiveHub) -> None:
        """Start delivering ``hub``'s events (call on the event loop)."""
        # Subscribed now, not once the outbox is open: events from here on are kept.
        sub = hub.subscribe(LiveFilter(), resume_from=self._last_seq)
        self._tasks = [
            asyncio.create_task(self._subscribe(hub, sub), name="webhooks-outbox"),
            asyncio.create_task(self._send_loop(), name="webhooks-sender"),
        ]

    def call_ended(self, call_id: str) -> None:
        """Unused hook kept for symmetry: call.ended arrives through the hub."""

    @property
    def depth(self) -> int:
        """Events stored, not yet delivered."""
        return self.outbox.depth if self.outbox is not None else 0

    def collector(self) -> Collector:
        """Prometheus metrics of this sender, to register on the app's registry."""
        return _WebhookCollector(self)

    async def wait_ready(self) -> None:
        """Until the outbox is open (tests)."""
        await self._ready.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.outbox is not None:
            await self.outbox.close()
            self.outbox = None

    # -- the outbox: every event to deliver is stored first ---------------------------------------

    async def _subscribe(self, hub: LiveHub, sub: Subscription) -> None:
        try:
            self.outbox = await WebhookOutbox.open(self.db_path, max_rows=self.max_rows)
        except BaseException:
            sub.close("stopped")
            raise
        if self.outbox.depth:
            logger.info("webhooks: %d undelivered events in the outbox", self.outbox.depth)
        self._ready.set()
        self._wake.set()
        while True:
            wake = asyncio.Event()
            sub.on_ready = wake.set
            if sub.pending:
                wake.set()
            try:
                while sub.closed_reason is None:
                    await wake.wait()
                    wake.clear()
                    for event in sub.drain():
                        await self._store(event)
                        self._last_seq = event.seq
                logger.warning("webhook sender fell behind (%s); resuming", sub.closed_reason)
            finally:
                sub.close("stopped")
            sub = hub.subscribe(LiveFilter(), resume_from=self._last_seq)

    def body(self, event: LiveEvent) -> dict[str, Any] | None:
        if event.type == "resync":
            logger.error("webhooks: events were lost while the outbox could not keep up")
            return None
        if event.type not in DELIVERED_TYPES:
            return None
        data = event.data
        if event.type == "call.ended":
            api = f"{self.base_url}/api/v1/calls/{event.call_id}"
            data["links"] = {
                "call": api,
                "view": f"{self.base_url}/calls/{event.call_id}",
                **{fmt: f"{api}/export?format={fmt}" for fmt in ("json", "txt", "vtt", "srt")},
            }
        return data

    async def _store(self, event: LiveEvent) -> None:
        data = self.body(event)
        if data is None:
            return
        assert self.outbox is not None
        body = json.dumps(data, ensure_ascii=False).encode()
        for attempt in range(1, 6):
            try:
                _, dropped = await self.outbox.put(
                    event.call_id or "", event.type, body, now_ms=_now_ms()
                )
                break
            except StorageError as exc:
                if attempt == 5:
                    logger.error("webhook %s seq %d not stored: %s", event.type, event.seq, exc)
                    self.failed += 1
                    return
                await asyncio.sleep(0.2 * attempt)
        if dropped:
            self.dropped += dropped
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
                self._last_drop_log = now
                logger.error(
                    "webhook outbox full (%d events): dropped the oldest (%d dropped so far); "
                    "is the receiver %s down?",
                    self.max_rows,
                    self.dropped,
                    self.url,
                )
        self._wake.set()

    # -- the sender ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        await self._ready.wait()
        pause_s = 0.0  # after a connection failure: the receiver is unreachable, for everyone
        while True:
            if pause_s:
                await asyncio.sleep(pause_s)
            self._wake.clear()  # before reading the outbox: what is stored from now on wakes us
            try:
                pause_s, wait_s = await self._send_due(pause_s)
            except StorageError as exc:
                logger.error("webhook outbox failed: %s", exc)
                pause_s, wait_s = 0.0, 5.0
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _send_due(self, pause_s: float) -> tuple[float, float]:
        """Send what is due; return (the pause after a connection failure, seconds to wait)."""
        outbox = self.outbox
        assert outbox is not None
        expired: list[OutboxItem] = []
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + min(60.0, self.max_age_s / 4)
            expired = await outbox.expire(created_before_ms=_now_ms() - int(self.max_age_s * 1000))
        for item in expired:
            self.failed += 1
            logger.error(
                "webhook %s #%d for call %s given up after %d tries over %.0f s: %s",
                item.event_type,
                item.id,
                item.call_id,
                item.attempts,
                self.max_age_s,
                item.last_error,
            )
        heads = await outbox.heads()
        if not heads:
            return 0.0, 60.0
        sent = False
        for item in heads:
            if item.next_at_ms > _now_ms():
                continue
            result = await asyncio.to_thread(self._post, item)
            sent = True
            if result.delivered:
                await outbox.remove(item.id)
                self.delivered += 1
                pause_s = 0.0
                continue
            if not result.retry:
                await outbox.remove(item.id)
                self.failed += 1
                logger.error(
                    "webhook %s #%d for call %s refused by %s: %s; dropped",
                    item.event_type,
                    item.id,
                    item.call_id,
                    self.url,
                    result.error,
                )
                continue
            backoff = self._backoff(item.attempts)
            await outbox.postpone(
                item.id, next_at_ms=_now_ms() + int(backoff * 1000), error=result.error
            )
            logger.warning(
                "webhook %s #%d for call %s to %s failed (try %d; again in %.1f s): %s",
                item.event_type,
                item.id,
                item.call_id,
                self.url,
                item.attempts + 1,
                backoff,
                result.error,
            )
            if result.status is None:  # unreachable: pause everyone, not only this call
                return min(max(pause_s * 2, self.first_backoff_s), self.max_backoff_s), 0.0
        if sent:
            return pause_s, 0.0  # look again: the calls' next events may be due now
        due = min(item.next_at_ms for item in heads)
        return pause_s, max(0.0, (due - _now_ms()) / 1000)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.first_backoff_s * 2.0 ** min(attempts, 30), self.max_backoff_s))

    def _post(self, item: OutboxItem) -> PostResult:
        headers = {
            "Content-Type": "application/json",
            "X-Bridge-Event": item.event_type,
            "X-Bridge-Delivery": str(item.id),
            "X-Bridge-Signature": sign(self.secret, item.body),
            "User-Agent": "call-bridge-webhooks",
        }
        request = urllib.request.Request(self.url, data=item.body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                status = int(response.status)
                return PostResult(status, f"HTTP {status}")
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                location = exc.headers.get("Location", "(no Location)")
                return PostResult(
                    exc.code,
                    f"HTTP {exc.code} redirect to {location[:200]} not followed for a POST: "
                    "set BRIDGE_WEBHOOK_URL to the final URL",
                )
            return PostResult(exc.code, f"HTTP {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return PostResult(None, str(getattr(exc, "reason", exc)))


class _WebhookCollector(Collector):
    def __init__(self, hooks: Webhooks) -> None:
        self.hooks = hooks

    def collect(self) -> Iterator[Metric]:
        hooks = self.hooks
        yield GaugeMetricFamily(
            "bridge_webhook_outbox_depth",
            "Webhook events stored and not yet delivered",
            value=hooks.depth,
        )
        deliveries = CounterMetricFamily(
            "bridge_webhook_deliveries",
            "Webhook events by outcome (failed: refused or given up; dropped: outbox full)",
            labels=["result"],
        )
        deliveries.add_metric(["delivered"], hooks.delivered)
        deliveries.add_metric(["failed"], hooks.failed)
        deliveries.add_metric(["dropped"], hooks.dropped)
        yield deliveries


def _now_ms() -> int:
    return int(time.time() * 1000)
