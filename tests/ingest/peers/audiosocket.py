"""``AudioSocketPeer`` behaves as Asterisk's ``AudioSocket()`` application does
(``res/res_audiosocket.c``, ``apps/app_audiosocket.c``; docs/media-forks.md §1): it connects,
sends the UUID frame, then one 320-byte signed-linear 8 kHz frame every 20 ms, DTMF as
one-digit frames, and a hangup frame (kind 0x00, length 0) when the channel hangs up.
"""

from __future__ import annotations

import asyncio
import uuid

from bridge.core.forks.audiosocket import Kind, frame
from tests.ingest.peers.common import frames_of, paced


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
        writer = self.writer
        assert writer is not None
        frames = frames_of(pcm, frame_bytes)

        async def one(i: int) -> None:
            self.send(frame(kind, frames[i]))
            if dtmf_at and i in dtmf_at:
                self.send(frame(Kind.DTMF, dtmf_at[i].encode()))
            await writer.drain()

        await paced(len(frames), one)

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
