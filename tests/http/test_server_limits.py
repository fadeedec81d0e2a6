"""Hostile connections (issue 12, item 4), with real sockets against a real served app.

Half-open connections that never finish their headers (slowloris), bodies that stall, and more
connections than the cap: each is cut within a bounded time, and ``/health`` keeps answering.
Also the open-file limit raised at start, and identical error lines rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from bridge.http.app import close_app, create_app
from bridge.http.server import (
    ConnectionGuard,
    ConnectionLimits,
    raise_open_file_limit,
    server_config,
)
from bridge.live import LiveHub
from bridge.log import RepeatFilter
from storage import TranscriptStore

from .served import NO_ASR, SUPERVISOR, TOKENS


@dataclass
class Running:
    host: str
    port: int
    guard: ConnectionGuard
    upload_dir: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, limits: ConnectionLimits) -> AsyncIterator[Running]:
    """The bridge app behind :func:`bridge.http.server.server_config`, as ``bridge serve``
    runs it, on a free port of 127.0.0.1 in this loop."""
    store = await TranscriptStore.open(tmp_path / "t.db")
    app = create_app(store=store, hub=LiveHub(), endpoint=NO_ASR, tokens=TOKENS)
    config = server_config(app, "127.0.0.1", 0, limits)
    config.load()
    guard = config.http_protocol_class.guard  # type: ignore[attr-defined]
    server = _Quiet(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running("127.0.0.1", port, guard, app.state.bridge.uploads.folder)
    finally:
        await close_app(app)
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await store.close()


async def open_partial(
    running: Running, head: bytes = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def closed_after(reader: asyncio.StreamReader, started: float, limit_s: float) -> float:
    """Seconds from ``started`` until the server closed the connection (EOF or reset)."""
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(65536), limit_s):
            pass
    return time.monotonic() - started


async def health_latency(running: Running) -> float:
    async with httpx.AsyncClient(base_url=running.base) as client:
        started = time.monotonic()
        r = await client.get("/health", timeout=5)
        assert r.status_code == 200
        return time.monotonic() - started


async def test_slowloris_connections_are_cut_at_the_header_timeout_and_health_answers(
    tmp_path: Path,
) -> None:
    limits = ConnectionLimits(header_timeout_s=4.0)
    async with serve(tmp_path, limits) as running:
        started = time.monotonic()
        conns = [await open_partial(running) for _ in range(200)]
        # Some trickle a header byte every 0.3 s: that does not extend their time.
        trickling = conns[:5]

        async def trickle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.3)
                for _, writer in trickling:
                    if not writer.is_closing():
                        with contextlib.suppress(ConnectionError):
                            writer.write(b"a")

        trickler = asyncio.create_task(trickle())
        await asyncio.sleep(0.3)
        assert len(running.guard.waiting) == 200  # all 200 are open, waiting for headers
        latencies = [await health_latency(running) for _ in range(20)]
        assert max(latencies) < 0.5, latencies

        closed = await asyncio.gather(*(closed_after(reader, started, 10.0) for reader, _ in conns))
        trickler.cancel()
        for _, writer in conns:
            writer.close()
        assert max(closed) < limits.header_timeout_s + 2.0, max(closed)
        assert min(closed) >= limits.header_timeout_s - 0.1, min(closed)
        assert running.guard.header_timeouts >= 200
        assert not running.guard.waiting
        print(
            f"\n200 partial-header connections: cut after {min(closed):.2f}..{max(closed):.2f} s"
            f" (header timeout {limits.header_timeout_s} s); /health p100 under load"
            f" {max(latencies) * 1000:.1f} ms"
        )


async def test_a_complete_request_then_partial_headers_on_keep_alive_is_cut_too(
    tmp_path: Path,
) -> None:
    limits = ConnectionLimits(header_timeout_s=1.0, keep_alive_s=30)
    async with serve(tmp_path, limits) as running:
        reader, writer = await asyncio.open_connection(running.host, running.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
        assert response.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHo")  # the next request never completes
        await writer.drain()
        assert await closed_after(reader, started, 5.0) < 2.0
        writer.close()


async def test_past_the_cap_the_oldest_half_open_connection_makes_room(tmp_path: Path) -> None:
    limits = ConnectionLimits(max_connections=50, header_timeout_s=30.0)
    async with serve(tmp_path, limits) as running:
        conns = [await open_partial(running) for _ in range(50)]
        await asyncio.sleep(0.2)
        assert len(running.guard.waiting) == 50
        # A real client still gets through: the oldest half-open connection is closed for it.
        started = time.monotonic()
        assert await health_latency(running) < 0.5
        assert await closed_after(conns[0][0], started, 2.0) < 1.0
        assert running.guard.evicted >= 1 and running.guard.refused == 0
        for _, writer in conns:
            writer.close()


async def test_a_stalled_request_body_is_cut_and_the_upload_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = ConnectionLimits(body_idle_timeout_s=1.0)
    async with serve(tmp_path, limits) as running:
        reader, writer = await asyncio.open_connection(running.host, running.port)
        writer.write(
            b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            b"Authorization: Bearer " + SUPERVISOR.encode() + b"\r\n"
            b"Content-Length: 100000\r\n\r\nRIFF"
        )
        await writer.drain()
        started = time.monotonic()
        assert await closed_after(reader, started, 5.0) < 2.5
        writer.close()
        assert running.guard.body_timeouts == 1
        for _ in range(100):  # the handler sees the disconnect and cleans up
            if not any(running.upload_dir.iterdir()):
                break
            await asyncio.sleep(0.02)
        assert [p.name for p in running.upload_dir.iterdir()] == [".lock"]
        assert await health_latency(running) < 0.5
    # A client cut for stalling is not the bridge's error: no traceback in the log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.fail(
            f"hard open-file limit {hard}: this test needs a finite one of at least 512 "
            "(ulimit -Hn 4096) to show the soft limit raised to it"
        )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_open_file_limit() == (256, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert raise_open_file_limit() == (hard, hard)  # nothing more to do
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_identical_error_lines_are_rate_limited() -> None:
    now = [0.0]
    flt = RepeatFilter(60.0, clock=lambda: now[0])
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    handler.addFilter(flt)
    log = logging.getLogger("test.flood")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for _ in range(100_000):  # accept() failing: "Too many open files", over and over
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                log.error("socket.accept() out of system resource", exc_info=True)
        log.error("another failure")
        log.info("info lines always pass")
        log.info("info lines always pass")
        assert records == [
            "socket.accept() out of system resource",
            "another failure",
            "info lines always pass",
            "info lines always pass",
        ]
        now[0] = 61.0
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            log.error("socket.accept() out of system resource", exc_info=True)
        assert records[-1] == (
            "socket.accept() out of system resource [99999 identical lines suppressed in the"
            " last 61 s]"
        )
        assert flt.suppressed == 99_999
    finally:
        log.removeHandler(handler)
        log.propagate = True
        log.setLevel(logging.NOTSET)


async def test_websocket_clients_outlive_the_header_timeout(tmp_path: Path) -> None:
    """The live API's WebSocket is past its headers: the timers stop at the upgrade."""
    from websockets.asyncio.client import connect

    limits = ConnectionLimits(header_timeout_s=0.5, body_idle_timeout_s=0.5)
    async with serve(tmp_path, limits) as running:
        url = f"ws://{running.host}:{running.port}/api/v1/live?token={SUPERVISOR}"
        async with connect(url) as ws:
            await asyncio.sleep(1.5)
            pong = await ws.ping()
            await asyncio.wait_for(pong, 2)
        assert running.guard.header_timeouts == 0 and not running.guard.waiting
