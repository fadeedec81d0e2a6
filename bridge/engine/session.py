"""One websocket session of the engine: frames through the protocol, one step loop per generation.

``protocol.py`` decides what every text frame means; this shell sends what it says to send, opens
a recognizer stream when a generation starts and hands it the audio (``steps.py`` runs the
generation's steps).  A binary frame ends the session as vLLM's ``receive_text()`` does.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.engine.align import StepAligner
from bridge.engine.protocol import (
    AudioEnded,
    AudioReceived,
    Event,
    GenerationStarted,
    RealtimeServerProtocol,
    SendFrame,
)
from bridge.engine.routes import random_hex16
from bridge.engine.steps import Generation

if TYPE_CHECKING:
    from bridge.engine.server import EngineServer

__all__ = ["EngineSession"]

logger = logging.getLogger(__name__)


class EngineSession:
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
        self.session_id = f"sess-{random_hex16()}"
        self.generation: Generation | None = None

    async def run(self) -> None:
        logger.info("session %s opened from %s", self.session_id, self.websocket.remote_address)
        try:
            frame = self.protocol.connection_made(self.session_id, int(time.time()))
            await self.websocket.send(frame.text)
            async for message in self.websocket:
                if isinstance(message, bytes):
                    # vLLM reads with receive_text(): a binary frame raises, the handler ends and
                    # the transport is closed without a close frame (the client sees 1006).
                    logger.warning("session %s: binary frame, connection dropped", self.session_id)
                    self.websocket.transport.abort()
                    return
                for event in self.protocol.receive_text(message):
                    await self._apply(event)
        except ConnectionClosed:
            pass
        finally:
            await self._stop_generation()
            logger.info("session %s closed", self.session_id)

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
            generation = Generation(
                event.generation,
                engine.recognizer.open_stream(self.protocol.language),
                aligner,
                protocol=self.protocol,
                send=self.websocket.send,
                scheduler=engine.scheduler,
                max_hold_ms=engine.config.max_hold_ms,
                session_id=self.session_id,
            )
            generation.start()
            self.generation = generation
        elif isinstance(event, AudioReceived):
            if self.generation is not None:
                self.generation.accept_audio(event.pcm16)
        elif isinstance(event, AudioEnded) and self.generation is not None:
            self.generation.end_audio()

    async def _stop_generation(self) -> None:
        generation, self.generation = self.generation, None
        if generation is not None:
            await generation.stop()
