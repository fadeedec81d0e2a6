"""``AsteriskWsPeer``: an Asterisk ``WebSocket`` channel (``channels/chan_websocket.c``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.core.g711 import encode_alaw, encode_ulaw
from tests.ingest.peers.common import FRAME_MS, frames_of, paced, slin8k, slin16k

# chan_websocket's formats: optimal_frame_size for 20 ms (``default_ms * minimum_bytes /
# minimum_ms`` of the codec, channels/chan_websocket.c) and how a 16 kHz float signal is coded.
ASTERISK_FRAME_BYTES = {"ulaw": 160, "alaw": 160, "slin": 320, "slin16": 640}


def asterisk_audio(fmt: str, audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> the bytes a WebSocket channel in ``fmt`` sends."""
    if fmt == "slin16":
        return slin16k(audio16k)
    pcm = np.frombuffer(slin8k(audio16k), "<i2")
    if fmt == "ulaw":
        return encode_ulaw(pcm)
    if fmt == "alaw":
        return encode_alaw(pcm)
    return pcm.tobytes()


class AsteriskWsPeer:
    """One Asterisk ``WebSocket`` channel connecting out (``Dial(WebSocket/<connection>/c(fmt)
    v(...))``), as ``channels/chan_websocket.c`` does: right after the upgrade one TEXT message
    ``MEDIA_START`` (JSON with ``control_message_format=json``, otherwise the plain-text line;
    ``legacy`` the first releases' line with no channel_id, format or ptime), then the channel's
    audio as BINARY messages of ``optimal_frame_size`` bytes every ``ptime`` (20) ms,
    ``DTMF_END`` as TEXT, and at hangup a close with the hangup's tech cause or 1000.  No
    per-message deflate (Asterisk's websocket client offers none)."""

    def __init__(
        self,
        url: str,
        *,
        fmt: str = "slin16",
        json_control: bool = True,
        legacy: bool = False,
        channel_id: str | None = None,
        variables: dict[str, str] | None = None,
        connection: str = "bridge",
    ) -> None:
        self.url = url
        self.fmt = fmt
        self.json_control = json_control
        self.legacy = legacy
        self.channel_id = channel_id or f"{int(time.time())}.{uuid.uuid4().int % 1000}"
        self.channel = f"WebSocket/{connection}/0x{uuid.uuid4().int % 2**48:012x}"
        self.connection = connection
        self.frame_bytes = ASTERISK_FRAME_BYTES.get(fmt, 0)
        self.variables = {
            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(self.frame_bytes),
            "MEDIA_WEBSOCKET_CONNECTION_ID": connection,
            **(variables or {}),
        }
        self.ws: ClientConnection | None = None

    def media_start(self) -> str:
        """``_create_event_MEDIA_START`` of chan_websocket.c, in this channel's control format."""
        if self.json_control:
            return json.dumps(
                {
                    "event": "MEDIA_START",
                    "connection_id": self.connection,
                    "channel": self.channel,
                    "channel_id": self.channel_id,
                    "format": self.fmt,
                    "optimal_frame_size": self.frame_bytes,
                    "ptime": FRAME_MS,
                    "channel_variables": self.variables,
                },
                separators=(",", ":"),  # AST_JSON_COMPACT
            )
        if self.legacy:
            return (
                f"MEDIA_START connection_id:{self.connection} channel:{self.channel} "
                f"optimal_frame_size:{self.frame_bytes}"
            )
        return (
            f"MEDIA_START connection_id:{self.connection} channel:{self.channel} "
            f"channel_id:{self.channel_id} format:{self.fmt} "
            f"optimal_frame_size:{self.frame_bytes} ptime:{FRAME_MS}"
        )

    async def connect(self, *, start: bool = True) -> None:
        self.ws = await connect(self.url, compression=None)
        if start:
            await self.ws.send(self.media_start())

    def dtmf_end(self, digit: str) -> str:
        if self.json_control:
            return json.dumps(
                {"event": "DTMF_END", "channel_id": self.channel_id, "digit": digit},
                separators=(",", ":"),
            )
        return f"DTMF_END digit:{digit} channel_id:{self.channel_id}"

    async def stream(self, audio: bytes, *, dtmf_at: dict[int, str] | None = None) -> None:
        """Send ``audio`` in this format, one ``optimal_frame_size`` message per 20 ms on an
        absolute schedule (the channel's timer), DTMF_END after frame ``i`` for ``dtmf_at``."""
        ws = self.ws
        assert ws is not None
        frames = frames_of(audio, self.frame_bytes)

        async def one(i: int) -> None:
            await ws.send(frames[i])
            if dtmf_at and i in dtmf_at:
                await ws.send(self.dtmf_end(dtmf_at[i]))

        await paced(len(frames), one)

    async def hangup(self, code: int = 1000) -> None:
        """``webchan_hangup``: ``ast_websocket_close(ws, tech_hangupcause ?: 1000)``."""
        assert self.ws is not None
        await self.ws.close(code)

    async def closed_with(self) -> tuple[int | None, str | None]:
        """Wait for the bridge to close; its close code and reason."""
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await self.ws.recv()
        return self.ws.close_code, self.ws.close_reason
