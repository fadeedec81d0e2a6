"""What the peers share: the 20 ms pacing loop, the reader of a server's JSON replies and
the speech conversions.

Speech comes as 16 kHz float (``tests/engine/speech.py``); a peer sends it as its PBX would:
signed linear 8 or 16 kHz, G.711 µ-law, interleaved channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bridge.core import g711

FRAME_MS = 20


def frames_of(data: bytes, size: int, pad: bytes = b"\x00") -> list[bytes]:
    """``data`` in messages of ``size`` bytes, the last one padded with ``pad``."""
    return [data[at : at + size].ljust(size, pad) for at in range(0, len(data), size)]


async def paced(
    count: int, send: Callable[[int], Awaitable[object]], *, frame_ms: int = FRAME_MS
) -> None:
    """``send(i)`` for ``i`` in ``range(count)``, one every ``frame_ms`` in real time on an
    absolute schedule (a late send does not delay the ones after it)."""
    start = time.monotonic()
    for i in range(count):
        await send(i)
        delay = start + (i + 1) * frame_ms / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def send_paced(
    send: Callable[[bytes], Awaitable[object]], data: bytes, size: int, *, pad: bytes = b"\x00"
) -> None:
    """``data`` in messages of ``size`` bytes (the last padded), one every 20 ms in real time."""
    frames = frames_of(data, size, pad)
    await paced(len(frames), lambda i: send(frames[i]))


async def collect(
    ws: ClientConnection, received: list[dict[str, Any]], arrived: asyncio.Event | None = None
) -> None:
    """Append each JSON message the server sends to ``received`` (setting ``arrived``) until
    the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            received.append(json.loads(message))
            if arrived is not None:
                arrived.set()


def slin8k(audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> 8 kHz signed linear little-endian (what AudioSocket() sends)."""
    pcm = soxr.resample(audio16k, 16000, 8000)
    return (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def slin16k(audio16k: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(audio16k, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def ulaw8k(audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> 8 kHz G.711 µ-law (what Twilio Media Streams send)."""
    return g711.encode_ulaw(np.frombuffer(slin8k(audio16k), "<i2"))


def interleave(*channels: bytes) -> bytes:
    """Little-endian 16-bit channels -> one interleaved stream (shorter ones padded)."""
    n = max(len(c) for c in channels) // 2
    arrays = [np.pad(np.frombuffer(c, "<i2"), (0, n - len(c) // 2)) for c in channels]
    return np.stack(arrays, axis=1).astype("<i2").tobytes()


def interleave_ulaw(left: bytes, right: bytes) -> bytes:
    """Two 1-byte-per-sample channels (µ-law) -> one interleaved stream (shorter padded with
    µ-law silence, 0xFF)."""
    n = max(len(left), len(right))
    channels = [np.frombuffer(c.ljust(n, b"\xff"), np.uint8) for c in (left, right)]
    return np.stack(channels, axis=1).tobytes()
