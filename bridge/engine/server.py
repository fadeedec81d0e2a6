"""The embedded speech engine's websocket server: vLLM's ``/v1/realtime``, served on a CPU.

A thin I/O shell: ``protocol.py`` decides every frame, the recognizer (``whisper.py``) makes the
words, ``align.py`` puts them on the 80 ms step clock.  This module only moves data, keeps the
step loop of each generation, runs decodes in a worker pool (never on the event loop) and
counts legs.

Timing: a step's delta goes out once its audio is in *and* the recognizer has settled every word
that could land on it (``align.py``), so word times read back from the step clock stay right;
deltas therefore trail live audio by the commit latency (~1-2 s in speech, ~0 in silence),
like a slow vLLM's.  Under load partial decodes thin out first (``scheduler.py``).

HTTP routes (answered from ``process_request`` before the websocket handshake), as in vLLM:
``GET /health`` → 200, empty body; ``GET /v1/models`` → the OpenAI model list; with an API key,
any ``/v1/*`` request without ``Authorization: Bearer <key>`` → 401 ``{"error":"Unauthorized"}``.

In-process use::

    engine = await start_engine_server(EngineConfig(model="base", language="en"))
    ... connect to engine.url, session.update with engine.model ...
    await engine.close()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import signal
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.engine.align import StepAligner
from bridge.engine.config import EngineConfig
from bridge.engine.protocol import (
    AudioEnded,
    AudioReceived,
    Event,
    GenerationStarted,
    RealtimeServerProtocol,
    SendFrame,
    StepClock,
)
from bridge.engine.recognizer import Recognizer, RecognizerStream
from bridge.engine.scheduler import DecodeScheduler

__all__ = ["EngineServer", "RunningEngine", "main_asr_server", "start_engine_server"]

logger = logging.getLogger(__name__)

# vLLM's AuthenticationMiddleware guards these prefixes; /health stays open.
_GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
# uvicorn defaults that vLLM runs with (vllm-realtime.md §1.1).
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_PING_INTERVAL_S = 20.0
_PING_TIMEOUT_S = 20.0


def _json_response(connection: ServerConnection, status: int, body: object) -> Response:
    # Starlette's JSONResponse: compact separators, raw UTF-8.
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    response = connection.respond(status, text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _random_hex16() -> str:
    # vLLM's random_uuid(): 64 random bits as 16 hex digits.
    return f"{uuid.uuid4().int & ((1 << 64) - 1):016x}"


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


@dataclass(eq=False)
class _Generation:
    number: int
    stream: RecognizerStream
    aligner: StepAligner
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    held_since: float | None = None  # when the first step now held had its audio in
    forced_steps: int = 0  # steps sent past max_hold_ms, before their text was known


class EngineServer:
    """Shared state of one engine: recognizer, decode pool, leg count, model card."""

    def __init__(self, config: EngineConfig, recognizer: Recognizer) -> None:
        self.config = config
        self.recognizer = recognizer
        self.clock = StepClock(config.transcription_delay_ms)
        self.legs = _Legs(config.legs)
        self.pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="asr-decode")
        self.scheduler = DecodeScheduler(self.pool, config.decode_workers)
        self.created = int(time.time())
        self._key_hash = (
            hashlib.sha256(config.api_key.encode()).digest() if config.api_key else None
        )
        self.connections: set[_Connection] = set()

    # ---- HTTP

    def models_body(self) -> dict[str, Any]:
        """vLLM's ``ModelList`` with one ``ModelCard`` (model_dump of the pydantic models)."""
        permission = {
            "id": f"modelperm-{_random_hex16()}",
            "object": "model_permission",
            "created": int(time.time()),
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        card = {
            "id": self.config.model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.recognizer.description,
            "parent": None,
            "max_model_len": self.config.max_model_len,
            "permission": [permission],
        }
        return {"object": "list", "data": [card]}

    def _authorized(self, headers: Headers) -> bool:
        if self._key_hash is None:
            return True
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return secrets.compare_digest(hashlib.sha256(token.encode()).digest(), self._key_hash)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path.startswith(_GUARDED_PREFIXES) and not self._authorized(request.headers):
            return _json_response(connection, HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if path == "/health" and not upgrade:
            return connection.respond(HTTPStatus.OK, "")
        if path == "/v1/models" and not upgrade:
            return _json_response(connection, HTTPStatus.OK, self.models_body())
        if path == "/v1/realtime" and upgrade:
            return None  # go on with the websocket handshake
        if upgrade:  # Starlette refuses a websocket on an unknown route before accepting
            return connection.respond(HTTPStatus.FORBIDDEN, "")
        return _json_response(connection, HTTPStatus.NOT_FOUND, {"detail": "Not Found"})

    # ---- websocket

    async def handle(self, websocket: ServerConnection) -> None:
        connection = _Connection(self, websocket)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if connection.protocol.holds_leg:
                self.legs.release()


class _Connection:
    """One websocket: frames through the protocol, one step loop per generation."""

    def __init__(self, engine: EngineServer, websocket: ServerConnection) -> None:
        self.engine = engine
        self.websocket = websocket
        config = engine.config
        self.protocol = RealtimeServerProtocol(
            model_names=[config.model_name],
            max_model_len=config.max_model_len,
            clock=engine.clock,
            acquire_leg=engine.legs.try_acquire,
            capacity_message=(
                f"Engine at capacity: all {engine.legs.limit} legs are in use "
                f"(--max-legs {engine.legs.limit}). Retry the commit later or start "
                "another engine."
            ),
        )
        self.session_id = f"sess-{_random_hex16()}"
        self.generation: _Generation | None = None

    async def run(self) -> None:
        log = logger.getChild("session")
        log.info("session %s opened from %s", self.session_id, self.websocket.remote_address)
        try:
            frame = self.protocol.connection_made(self.session_id, int(time.time()))
            await self.websocket.send(frame.text)
            async for message in self.websocket:
                if isinstance(message, bytes):
                    # vLLM reads with receive_text(): a binary frame raises, the handler ends and
                    # the transport is closed without a close frame (the client sees 1006).
                    log.warning("session %s: binary frame, connection dropped", self.session_id)
                    self.websocket.transport.abort()
                    return
                for event in self.protocol.receive_text(message):
                    await self._apply(event)
        except ConnectionClosed:
            pass
        finally:
            await self._stop_generation()
            log.info("session %s closed", self.session_id)

    async def _apply(self, event: Event) -> None:
        if isinstance(event, SendFrame):
            await self.websocket.send(event.text)
        elif isinstance(event, GenerationStarted):
            await self._stop_generation()
            engine = self.engine
            aligner = StepAligner(
                delay_samples=engine.clock.delay_samples,
                anchor=engine.config.word_anchor,
            )
            stream = engine.recognizer.open_stream(self.protocol.language)
            generation = _Generation(event.generation, stream, aligner)
            generation.task = asyncio.create_task(self._step_loop(generation))
            self.generation = generation
        elif isinstance(event, AudioReceived):
            if self.generation is not None:
                self.generation.stream.accept_audio(event.pcm16)
                self.generation.wake.set()
        elif isinstance(event, AudioEnded) and self.generation is not None:
            self.generation.stream.end_audio()
            self.generation.wake.set()

    async def _stop_generation(self) -> None:
        generation, self.generation = self.generation, None
        if generation is not None and generation.task is not None:
            generation.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await generation.task

    async def _step_loop(self, generation: _Generation) -> None:
        """Send each 80 ms step once its audio is in and its text is known; then ``done``."""
        protocol, stream = self.protocol, generation.stream
        try:
            while protocol.generating and protocol.generation == generation.number:
                generation.wake.clear()
                await self._send_ready_steps(generation)
                if protocol.generation_complete:
                    if generation.forced_steps:
                        logger.info(
                            "session %s: %d step(s) went out after %d ms without their text",
                            self.session_id,
                            generation.forced_steps,
                            self.engine.config.max_hold_ms,
                        )
                    await self.websocket.send(protocol.send_done().text)
                    return
                if stream.needs_decode():
                    await self.engine.scheduler.run(stream.decode, urgent=stream.urgent_decode)
                    generation.aligner.add_words(stream.take_words())
                    continue
                held = generation.held_since
                if held is None:
                    await generation.wake.wait()
                else:  # wake up when the held step is due, new audio or not
                    due_s = held + self.engine.config.max_hold_ms / 1000 - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(generation.wake.wait(), max(0.0, due_s))
        except ConnectionClosed:
            return
        except Exception as exc:  # the recognizer failed: vLLM's generation-task error path
            logger.exception("session %s: recognition failed", self.session_id)
            if protocol.generating and protocol.generation == generation.number:
                with contextlib.suppress(ConnectionClosed):
                    await self.websocket.send(protocol.fail_generation(str(exc)).text)

    async def _send_ready_steps(self, generation: _Generation) -> None:
        """Send every step whose audio is in and whose text is known, and any step held longer
        than ``max_hold_ms`` (bounded hold: progress whatever the recognizer or the client do).
        """
        protocol, stream, aligner = self.protocol, generation.stream, generation.aligner
        clock = self.engine.clock
        max_hold_s = self.engine.config.max_hold_ms / 1000
        while protocol.steps_ready > 0:
            step_end = protocol.next_step_end_samples
            if aligner.may_send(step_end, horizon_samples=stream.horizon_samples):
                generation.held_since = None
            else:
                now = time.monotonic()
                if generation.held_since is None:
                    generation.held_since = now
                if now - generation.held_since < max_hold_s:
                    return
                generation.forced_steps += 1  # steps held as long go too (held_since stays)
            text = aligner.text_for_step(step_end)
            last = protocol.audio_ended and protocol.steps_sent + 1 == clock.steps_available(
                protocol.received_samples, ended=True
            )
            if last and stream.finished:
                text += aligner.flush()  # words committed too late for their own step
            await self.websocket.send(protocol.send_delta(text).text)
        generation.held_since = None  # nothing held: the next step's hold starts when it is in


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
        process_request=engine.process_request,
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


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge asr-server",
        description=(
            "Embedded CPU speech engine (faster-whisper) behind vLLM's /v1/realtime protocol."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", default="base", help="base, tiny.en, or a faster-whisper name")
    model.add_argument("--model-dir", help="a CTranslate2 Whisper model directory")
    parser.add_argument("--language", help="e.g. en; default: detect per utterance stream")
    parser.add_argument("--served-model-name", help="name for session.update (default whisper-*)")
    parser.add_argument("--api-key", help="require Authorization: Bearer KEY on /v1/*")
    parser.add_argument("--max-legs", type=int, help="concurrent legs (default: measured/core)")
    parser.add_argument("--max-model-len", type=int, default=131_072)
    parser.add_argument("--transcription-delay-ms", type=int, default=480)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--word-anchor", choices=("end", "start"), default="start")
    parser.add_argument(
        "--max-hold-ms",
        type=int,
        default=6000,
        help="longest a step waits for its text before it goes without it (default 6000)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


async def _serve_until_signalled(config: EngineConfig) -> None:
    engine = await start_engine_server(config)
    print(f"serving {engine.model} on {engine.url} ({engine.max_legs} legs)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await engine.close()


def main_asr_server(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bridge asr-server``; returns the exit status."""
    from bridge.errors import ConfigError

    args = _parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # one INFO line per HTTP request and per close otherwise
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    try:
        config = EngineConfig(
            host=args.host,
            port=args.port,
            model=args.model_dir or args.model,
            served_model_name=args.served_model_name,
            language=args.language,
            api_key=args.api_key,
            max_legs=args.max_legs,
            max_model_len=args.max_model_len,
            transcription_delay_ms=args.transcription_delay_ms,
            cpu_threads=args.cpu_threads,
            word_anchor=args.word_anchor,
            max_hold_ms=args.max_hold_ms,
        )
        asyncio.run(_serve_until_signalled(config))
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main_asr_server())
