"""One OpenAI-dialect websocket of the engine (``/v1/realtime?intent=transcription``): frames
through :class:`~bridge.engine.openai_server.OpenAiServerProtocol`; each committed turn is
recognized whole on the decode workers, in commit order, while the next turn streams in."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.engine.align import TimedWord
from bridge.engine.openai_server import OpenAiServerProtocol, SendFrame, TurnCommitted

if TYPE_CHECKING:
    from bridge.engine.server import EngineServer

__all__ = ["OpenAiEngineSession"]

logger = logging.getLogger(__name__)

MAX_TURNS_WAITING = 64  # committed turns not yet transcribed; more is a client flooding us


class OpenAiEngineSession:
    def __init__(self, engine: EngineServer, websocket: ServerConnection) -> None:
        self.engine = engine
        self.websocket = websocket
        self.protocol = OpenAiServerProtocol([engine.config.model_name])
        self._turns: asyncio.Queue[TurnCommitted] = asyncio.Queue(MAX_TURNS_WAITING)

    async def run(self) -> None:
        session = self.protocol.session_id
        logger.info(
            "transcription session %s opened from %s", session, self.websocket.remote_address
        )
        worker = asyncio.create_task(self._transcribe_turns())
        try:
            await self.websocket.send(self.protocol.connection_made().text)
            async for message in self.websocket:
                if isinstance(message, bytes):
                    logger.warning("session %s: binary frame, connection dropped", session)
                    self.websocket.transport.abort()
                    return
                for event in self.protocol.receive_text(message):
                    if isinstance(event, SendFrame):
                        await self.websocket.send(event.text)
                    elif self._turns.full():
                        logger.warning(
                            "session %s: %d turns waiting, dropped", session, MAX_TURNS_WAITING
                        )
                        await self.websocket.close(1013, "too many turns waiting")
                        return
                    else:
                        self._turns.put_nowait(event)
        except ConnectionClosed:
            pass
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            logger.info("transcription session %s closed", session)

    async def _transcribe_turns(self) -> None:
        while True:
            turn = await self._turns.get()
            try:
                words = await self._recognize(turn.pcm16)
                for frame in self.protocol.turn_text(turn.item_id, words):
                    await self.websocket.send(frame.text)
            except ConnectionClosed:
                return
            finally:
                self._turns.task_done()

    async def _recognize(self, pcm16: bytes) -> list[TimedWord]:
        stream = self.engine.recognizer.open_stream(self.protocol.language)
        stream.accept_audio(pcm16)
        stream.end_audio()
        words: list[TimedWord] = []
        while not stream.finished:
            await self.engine.scheduler.run(stream.decode, urgent=lambda: True)
            words += stream.take_words()
        words += stream.take_words()
        return words
