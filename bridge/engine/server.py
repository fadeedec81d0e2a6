"""The embedded speech engine's websocket server: vLLM's ``/v1/realtime``, served on a CPU.

A thin I/O shell: ``routes.py`` answers HTTP before the handshake, ``session.py`` runs each
websocket through ``protocol.py`` (which decides every frame), ``steps.py`` runs each
generation's step loop, the recognizer (``whisper.py``) makes the words and ``align.py`` puts
them on the 80 ms step clock.  This module holds what the sessions share (recognizer, decode
pool and scheduler, leg count) and starts the server; ``cli.py`` is ``bridge asr-server``.

Timing: a step's delta goes out once its audio is in and its text is known (``steps.py``), so
deltas trail live audio by the recognizer's commit latency (~1-2 s in speech, ~0 in silence),
like a slow vLLM's.  Under load partial decodes thin out first (``scheduler.py``).

In-process use::

    engine = await start_engine_server(EngineConfig(model="base", language="en"))
    ... connect to engine.url, session.update with engine.model ...
    await engine.close()
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve

from bridge.engine.config import EngineConfig
from bridge.engine.openai_server import error_frame
from bridge.engine.openai_session import OpenAiEngineSession
from bridge.engine.protocol import StepClock
from bridge.engine.recognizer import Recognizer
from bridge.engine.routes import EngineRoutes
from bridge.engine.scheduler import DecodeScheduler
from bridge.engine.session import EngineSession

__all__ = ["EngineServer", "RunningEngine", "load_recognizer", "start_engine_server"]

logger = logging.getLogger(__name__)

# uvicorn defaults that vLLM runs with (vllm-realtime.md §1.1).
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_PING_INTERVAL_S = 20.0
_PING_TIMEOUT_S = 20.0


class _Legs:
    """How many connections hold a leg (acquired at their first generation)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def try_acquire(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use -= 1


class EngineServer:
    """Shared state of one engine: recognizer, decode pool, leg count, HTTP routes."""

    def __init__(self, config: EngineConfig, recognizer: Recognizer) -> None:
        self.config = config
        self.recognizer = recognizer
        self.clock = StepClock(config.transcription_delay_ms)
        self.legs = _Legs(config.legs)
        self.pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="asr-decode")
        self.scheduler = DecodeScheduler(self.pool, config.decode_workers)
        self.routes = EngineRoutes(config, recognizer.description)
        self.sessions: set[EngineSession] = set()

    async def handle(self, websocket: ServerConnection) -> None:
        request = websocket.request
        if request is not None and "intent=transcription" in urlsplit(request.path).query:
            await self._handle_transcription(websocket)
            return
        session = EngineSession(self, websocket)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            if session.protocol.holds_leg:
                self.legs.release()

    async def _handle_transcription(self, websocket: ServerConnection) -> None:
        """An OpenAI transcription session holds one leg for as long as it is open."""
        if not self.legs.try_acquire():
            message = f"all {self.legs.limit} legs are in use"
            await websocket.send(error_frame("capacity_exceeded", message, "server_error").text)
            await websocket.close(1013, "capacity exceeded")
            return
        try:
            await OpenAiEngineSession(self, websocket).run()
        finally:
            self.legs.release()


@dataclass
class RunningEngine:
    """An engine server started by :func:`start_engine_server`."""

    url: str  # ws://host:port/v1/realtime
    http_url: str  # http://host:port (for /health and /v1/models)
    model: str  # the served model name to put in session.update
    max_legs: int
    engine: EngineServer
    server: Server

    @property
    def legs_in_use(self) -> int:
        return self.engine.legs.in_use

    async def close(self) -> None:
        """Stop listening, close every session (1001) and the decode pool."""
        self.server.close()
        await self.server.wait_closed()
        await asyncio.to_thread(self.engine.pool.shutdown, wait=True, cancel_futures=True)


def load_recognizer(config: EngineConfig, **whisper: Any) -> Recognizer:
    """Load the faster-whisper model ``config.model`` (blocking; seconds).

    ``whisper``: further ``WhisperConfig`` settings (the benchmark's experiments).
    """
    from bridge.engine.weights import resolve_model
    from bridge.engine.whisper import WhisperConfig, load_whisper

    return load_whisper(
        WhisperConfig(
            model_path=resolve_model(config.model),
            language=config.language,
            cpu_threads=config.cpu_threads,
            num_workers=config.decode_workers,
            beam_size=config.beam_size,
            decode_interval_ms=config.decode_interval_ms,
            **whisper,
        )
    )


async def start_engine_server(
    config: EngineConfig, *, recognizer: Recognizer | None = None
) -> RunningEngine:
    """Load the model (unless ``recognizer`` is given) and listen; return when ready."""
    if recognizer is None:
        recognizer = await asyncio.to_thread(load_recognizer, config)
    engine = EngineServer(config, recognizer)
    server = await serve(
        engine.handle,
        config.host,
        config.port,
        process_request=engine.routes.process_request,
        max_size=_MAX_MESSAGE_BYTES,
        ping_interval=_PING_INTERVAL_S,
        ping_timeout=_PING_TIMEOUT_S,
    )
    port = next(iter(server.sockets)).getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    logger.info(
        "speech engine %s on ws://%s:%d/v1/realtime (%d legs)",
        config.model_name,
        host,
        port,
        config.legs,
    )
    return RunningEngine(
        url=f"ws://{host}:{port}/v1/realtime",
        http_url=f"http://{host}:{port}",
        model=config.model_name,
        max_legs=config.legs,
        engine=engine,
        server=server,
    )


if __name__ == "__main__":  # python -m bridge.engine.server: the same as bridge asr-server
    from bridge.engine.cli import main_asr_server

    raise SystemExit(main_asr_server())
