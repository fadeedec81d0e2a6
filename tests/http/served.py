"""A real bridge HTTP server for tests: uvicorn on a free 127.0.0.1 port, in the test's loop,
over a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from bridge.asr.client import AsrEndpoint
from bridge.asr.pool import AsrTarget
from bridge.auth import Principal, Role
from bridge.http.app import close_app, create_app
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.webrtc.session import WhipSettings
from storage import TranscriptStore

SUPERVISOR = "supervisor-token-1"
ALICE = "alice-agent-token"
BOB = "bob-agent-token-2"
TOKENS = {
    SUPERVISOR: Principal(Role.SUPERVISOR),
    ALICE: Principal(Role.AGENT, "alice"),
    BOB: Principal(Role.AGENT, "bob"),
}
NO_ASR = AsrEndpoint(url="ws://127.0.0.1:9/v1/realtime", model="none", give_up_after_s=1.0)


@dataclass
class Served:
    base: str
    ws: str
    store: TranscriptStore
    hub: LiveHub

    def auth(self, token: str = SUPERVISOR) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve_bridge(
    db: Path,
    *,
    hub: LiveHub | None = None,
    endpoint: AsrTarget = NO_ASR,
    settings: LegSettings | None = None,
    whip: WhipSettings | None = None,
) -> AsyncIterator[Served]:
    store = await TranscriptStore.open(db)
    hub = hub or LiveHub()
    app = create_app(
        store=store, hub=hub, endpoint=endpoint, tokens=TOKENS, settings=settings, whip=whip
    )
    server = _Quiet(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", store, hub)
    finally:
        await close_app(app)
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await store.close()
