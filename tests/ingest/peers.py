"""Media-fork peers for the tests, written from the protocols' published sources.

``AudioSocketPeer`` behaves as Asterisk's ``AudioSocket()`` application does
(``res/res_audiosocket.c``, ``apps/app_audiosocket.c``; docs/media-forks.md §1): it connects,
sends the UUID frame, then one 320-byte signed-linear 8 kHz frame every 20 ms, DTMF as
one-digit frames, and a hangup frame (kind 0x00, length 0) when the channel hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import numpy as np
import numpy.typing as npt
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge.core.forks.audiosocket import Kind, frame

FRAME_MS = 20


def slin8k(audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> 8 kHz signed linear little-endian (what AudioSocket() sends)."""
    pcm = soxr.resample(audio16k, 16000, 8000)
    return (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class AudioSocketPeer:
    """One Asterisk channel's AudioSocket connection."""

    def __init__(self, port: int, uid: uuid.UUID, *, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.uid = uid
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.send(frame(Kind.UUID, self.uid.bytes))

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def stream(
        self,
        pcm: bytes,
        *,
        kind: int = Kind.AUDIO_SLIN,
        frame_bytes: int = 320,
        dtmf_at: dict[int, str] | None = None,
    ) -> None:
        """Send ``pcm`` paced in real time, one frame every 20 ms (on an absolute schedule)."""
        assert self.writer is not None
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), frame_bytes)):
            chunk = pcm[at : at + frame_bytes]
            if len(chunk) < frame_bytes:
                chunk += bytes(frame_bytes - len(chunk))
            self.send(frame(kind, chunk))
            if dtmf_at and i in dtmf_at:
                self.send(frame(Kind.DTMF, dtmf_at[i].encode()))
            await self.writer.drain()
            delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def hangup(self) -> None:
        self.send(frame(Kind.HANGUP))
        await self.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass


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
        self.received: list[dict[str, object]] = []
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
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.received.append(json.loads(message))

    async def stream(self, pcm: bytes, *, frame_bytes: int) -> None:
        """Send ``pcm`` (already interleaved) paced in real time, ``frame_bytes`` per 20 ms."""
        assert self.ws is not None
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), frame_bytes)):
            chunk = pcm[at : at + frame_bytes]
            await self.ws.send(chunk + bytes(frame_bytes - len(chunk)))
            delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def hangup(self) -> None:
        assert self.ws is not None
        await self.ws.close(1000)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def interleave(*channels: bytes) -> bytes:
    """Little-endian 16-bit channels -> one interleaved stream (shorter ones padded)."""
    n = max(len(c) for c in channels) // 2
    arrays = [np.pad(np.frombuffer(c, "<i2"), (0, n - len(c) // 2)) for c in channels]
    return np.stack(arrays, axis=1).astype("<i2").tobytes()


def slin16k(audio16k: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(audio16k, -1.0, 1.0) * 32767).astype("<i2").tobytes()
