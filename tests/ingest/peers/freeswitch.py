"""``FreeSwitchPeer``: a FreeSWITCH channel's ``uuid_audio_stream`` (amigniter/mod_audio_stream;
mod_audio_fork with a subprotocol)."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.ingest.peers.common import collect, send_paced


class FreeSwitchPeer:
    """A FreeSWITCH channel's ``uuid_audio_stream`` (amigniter/mod_audio_stream; mod_audio_fork
    with ``subprotocol``): a WebSocket with per-message deflate, the metadata as the first text
    message, then binary L16 little-endian, one message per 20 ms (``STREAM_BUFFER_SIZE``), the
    channels interleaved for ``stereo``; the channel's hangup is a normal close (1000)."""

    def __init__(self, url: str, *, subprotocol: str | None = None, token: str | None = None):
        self.url = url
        self.subprotocol = subprotocol
        self.token = token
        self.ws: ClientConnection | None = None
        self.received: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, metadata: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.ws = await connect(
            self.url,
            additional_headers=headers,
            subprotocols=[Subprotocol(self.subprotocol)] if self.subprotocol else None,
            compression="deflate",
        )
        if metadata is not None:
            await self.ws.send(metadata)
        self._reader = asyncio.create_task(collect(self.ws, self.received))

    async def stream(self, pcm: bytes, *, frame_bytes: int) -> None:
        """Send ``pcm`` (already interleaved) paced in real time, ``frame_bytes`` per 20 ms."""
        assert self.ws is not None
        await send_paced(self.ws.send, pcm, frame_bytes)

    async def hangup(self) -> None:
        assert self.ws is not None
        await self.ws.close(1000)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
