"""Webhooks: an HTTP POST on every final segment and on call end, signed and retried.

The sender is one more :class:`~bridge.live.LiveHub` subscriber (``all`` calls), so it inherits
the hub's rules: its queue is bounded, finals are never dropped, and when the receiver is down
for so long that the subscription is closed as too slow it resubscribes from the last delivered
``seq`` (the hub's ring has the rest, else a ``resync`` is logged).

Each POST body is JSON: the live event (``seq``, ``type``, ``call_id``, payload) plus, on
``call.ended``, ``links`` to the call, its dashboard page and its exports.  Headers::

    Content-Type: application/json
    X-Bridge-Event: segment.final | call.ended
    X-Bridge-Delivery: <seq>            (the same on every retry: receivers can de-duplicate)
    X-Bridge-Signature: sha256=<hex>    HMAC-SHA256 of the raw body with the shared secret

A delivery is retried on a connection error or a 5xx/429 answer with backoff (0.5 s doubling to
30 s, at most ``max_attempts`` tries), then logged and skipped; a 4xx answer is not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from bridge.live import LiveEvent, LiveFilter, LiveHub, Subscription

logger = logging.getLogger(__name__)

DELIVERED_TYPES = ("segment.final", "call.ended")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Bridge-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


class Webhooks:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        base_url: str,
        store: object = None,
        max_attempts: int = 6,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.delivered = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._last_seq: int | None = None

    def attach(self, hub: LiveHub) -> None:
        """Start delivering ``hub``'s events (call on the event loop)."""
        self._task = asyncio.create_task(self._run(hub), name="webhooks")

    def call_ended(self, call_id: str) -> None:
        """Unused hook kept for symmetry: call.ended arrives through the hub."""

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, hub: LiveHub) -> None:
        while True:
            wake = asyncio.Event()
            sub: Subscription = hub.subscribe(LiveFilter(), resume_from=self._last_seq)
            sub.on_ready = wake.set
            try:
                while sub.closed_reason is None:
                    await wake.wait()
                    wake.clear()
                    for event in sub.drain():
                        await self._deliver(event)
                        self._last_seq = event.seq
                logger.warning("webhook sender fell behind (%s); resuming", sub.closed_reason)
            finally:
                sub.close("stopped")

    def body(self, event: LiveEvent) -> dict[str, Any] | None:
        if event.type == "resync":
            logger.error("webhooks: events were lost while the receiver was unreachable")
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

    async def _deliver(self, event: LiveEvent) -> None:
        data = self.body(event)
        if data is None:
            return
        body = json.dumps(data, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Bridge-Event": event.type,
            "X-Bridge-Delivery": str(event.seq),
            "X-Bridge-Signature": sign(self.secret, body),
            "User-Agent": "call-bridge-webhooks",
        }
        backoff = self.first_backoff_s
        for attempt in range(1, self.max_attempts + 1):
            status, error = await asyncio.to_thread(self._post, body, headers)
            if status is not None and status < 400:
                self.delivered += 1
                return
            retry = status is None or status >= 500 or status == 429
            logger.warning(
                "webhook %s seq %d to %s failed (attempt %d/%d): %s",
                event.type,
                event.seq,
                self.url,
                attempt,
                self.max_attempts,
                error,
            )
            if not retry or attempt == self.max_attempts:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        self.failed += 1

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status), f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return None, str(getattr(exc, "reason", exc))
