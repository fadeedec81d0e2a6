"""``run_http``: the HTTP service inside ``bridge serve`` (uvicorn on the bridge's event loop).

uvicorn's ``Server`` runs as a task of the serving loop; ``stop`` ends it gracefully (live
clients get close code 1001, uploads are cancelled, open requests finish).  A retention task
deletes ended calls older than ``http.retention_days`` once at start and then hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sys
import time
from collections.abc import Iterator

import uvicorn

from bridge.config import BridgeConfig
from bridge.io.asr_client import AsrEndpoint
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.webrtc.session import WhipSettings
from storage import TranscriptStore

from .app import close_app, create_app
from .auth import Principal, Role

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (``bridge serve`` owns SIGINT/SIGTERM: ``stop``),
    and with an event set once its sockets listen."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()


async def retention_loop(
    store: TranscriptStore,
    days: float,
    stop: asyncio.Event,
    interval_s: float = RETENTION_INTERVAL_S,
) -> None:
    """Delete ended calls older than ``days``, now and every ``interval_s``, until ``stop``."""
    while not stop.is_set():
        cutoff_ms = int((time.time() - days * 86_400) * 1000)
        deleted = await store.delete_ended_before(cutoff_ms)
        if deleted:
            logger.info("retention: deleted %d call(s) that ended over %s days ago", deleted, days)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def run_http(
    config: BridgeConfig,
    *,
    store: TranscriptStore,
    hub: LiveHub,
    endpoint: AsrEndpoint,
    stop: asyncio.Event,
    settings: LegSettings | None = None,
) -> None:
    """Serve HTTP on ``config.serve.host:port`` until ``stop`` is set."""
    from bridge.webhooks import Webhooks

    tokens = dict(config.http.api_tokens)
    if not tokens:
        token = secrets.token_urlsafe(24)
        tokens[token] = Principal(Role.SUPERVISOR)
        print(
            "bridge: no API tokens configured (BRIDGE_API_TOKENS); this run's supervisor token: "
            f"{token}",
            file=sys.stderr,
        )
    base_url = config.http.public_url or f"http://{config.serve.host}:{config.serve.port}"
    webhooks = None
    if config.http.webhook_url and config.http.webhook_secret:
        webhooks = Webhooks(
            config.http.webhook_url, config.http.webhook_secret, base_url=base_url, store=store
        )
        webhooks.attach(hub)
    webrtc = config.webrtc
    ice_servers: list[tuple[tuple[str, ...], str | None, str | None]] = []
    if webrtc.stun_urls:
        ice_servers.append((webrtc.stun_urls, None, None))
    if webrtc.turn_urls:
        ice_servers.append((webrtc.turn_urls, webrtc.turn_username, webrtc.turn_password))
    app = create_app(
        store=store,
        hub=hub,
        endpoint=endpoint,
        tokens=tokens,
        settings=settings,
        on_call_ended=webhooks.call_ended if webhooks else None,
        whip=WhipSettings(
            max_sessions=webrtc.max_sessions,
            ice_servers=tuple(ice_servers),
            public_address=webrtc.public_address,
        ),
    )
    if webhooks is not None:
        app.state.registry.register(webhooks.collector())  # bridge_webhook_* metrics
    server = _Server(
        uvicorn.Config(
            app,
            host=config.serve.host,
            port=config.serve.port,
            lifespan="off",
            log_level="warning",
            ws_ping_interval=20,
            ws_ping_timeout=20,
            timeout_graceful_shutdown=5,
        )
    )
    serving = asyncio.create_task(server.serve(), name="http")
    retention = None
    if config.http.retention_days > 0:
        retention = asyncio.create_task(
            retention_loop(store, config.http.retention_days, stop), name="retention"
        )
    try:
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if server.started:  # announce only what really listens
            print(f"bridge: dashboards and API at {base_url}/", file=sys.stderr)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    finally:
        await close_app(app)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        if webhooks is not None:
            await webhooks.close()
    error = serving.exception() if serving.done() and not serving.cancelled() else None
    if error is not None:
        raise error
    if server.started is False and not stop.is_set():
        raise OSError(f"cannot serve HTTP on {config.serve.host}:{config.serve.port}")
