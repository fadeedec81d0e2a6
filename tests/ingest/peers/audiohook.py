"""``AudioHookPeer``: Genesys Cloud's side of one AudioHook session (protocol v2)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from bridge.core.forks.httpsig import sign
from tests.ingest.peers.common import collect, frames_of, paced

# The offer Genesys makes first: stereo µ-law, the customer (external) left.
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}


class AudioHookPeer:
    """Genesys Cloud's side of one AudioHook session (protocol v2), as the AudioHook protocol
    specification (developer.genesys.cloud, devapps/audiohook) and Genesys' reference client
    (purecloudlabs/audiohook-reference-implementation, ``client/`` and
    ``app/audiohook/src/client/clientsessionimpl.ts``) do it: the upgrade carries
    ``Audiohook-Organization-Id``, ``Audiohook-Correlation-Id``, ``Audiohook-Session-Id`` and
    ``X-API-KEY``, signed (``Signature-Input``/``Signature``, hmac-sha256) when the integration
    has a client secret; ``open`` offers the formats; after ``opened`` audio goes as binary
    messages of the accepted format (PCMU stereo: external left, internal right), ``ping`` now
    and then, ``paused``/``resumed`` around a pause, and ``close`` ends the session; the
    socket closes once ``closed`` came back.  Every message counts ``seq`` from 1 and carries
    the last server ``seq`` seen and the audio ``position``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        client_secret: bytes | None = None,
        conversation_id: str | None = None,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.client_secret = client_secret
        self.session_id = str(uuid.uuid4())
        self.organization_id = str(uuid.uuid4())
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.ws: ClientConnection | None = None
        self.received: list[dict[str, Any]] = []
        self.seq = 0
        self.samples = 0  # audio position, in samples at 8 kHz
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    def headers(self) -> dict[str, str]:
        split = urlsplit(self.url)
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Correlation-Id": self.conversation_id,
            "Audiohook-Session-Id": self.session_id,
            "X-API-KEY": self.api_key,
        }
        if self.client_secret is not None:
            target = split.path + (f"?{split.query}" if split.query else "")
            parts = [("@request-target", target), ("@authority", split.netloc)]
            parts += [(name.lower(), value) for name, value in headers.items()]
            nonce = base64.b64encode(os.urandom(18)).decode()
            headers |= sign(
                parts, self.client_secret, keyid=self.api_key, nonce=nonce, created=int(time.time())
            )
        return headers

    async def connect(
        self, media: list[dict[str, Any]] | None = None, *, answer: str = "opened"
    ) -> dict[str, Any]:
        """The upgrade and the open transaction: the server's answer (``opened``)."""
        self.ws = await connect(self.url, additional_headers=self.headers())
        self._reader = asyncio.create_task(collect(self.ws, self.received, self._arrived))
        offered = media or [STEREO, STEREO | {"channels": ["external"]}]
        await self.send(
            "open",
            organizationId=self.organization_id,
            conversationId=self.conversation_id,
            participant={
                "id": str(uuid.uuid4()),
                "ani": "+4930123456",
                "aniName": "Ann Customer",
                "dnis": "+4940999",
            },
            media=offered,
            language="en-US",
            customConfig={"queue": "billing"},
        )
        return await self.expect(answer)

    async def send(self, kind: str, **parameters: Any) -> None:
        assert self.ws is not None
        self.seq += 1
        serverseq = max((int(m["seq"]) for m in self.received), default=0)
        await self.ws.send(
            json.dumps(
                {
                    "version": "2",
                    "id": self.session_id,
                    "type": kind,
                    "seq": self.seq,
                    "serverseq": serverseq,
                    "position": f"PT{self.samples / 8000:.3f}S",
                    "parameters": parameters,
                }
            )
        )

    async def expect(self, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next server message of ``kind`` not yet expected."""
        async with asyncio.timeout(timeout_s):
            while True:
                for message in self.received:
                    if message["type"] == kind and not message.get("_seen"):
                        message["_seen"] = True
                        return message
                self._arrived.clear()
                await self._arrived.wait()

    async def stream(self, audio: bytes, *, frame_ms: int = 100, channels: int = 2) -> None:
        """Send interleaved µ-law ``audio`` paced in real time, one message per ``frame_ms``."""
        ws = self.ws
        assert ws is not None
        frames = frames_of(audio, 8 * frame_ms * channels, b"\xff")

        async def one(i: int) -> None:
            await ws.send(frames[i])
            self.samples += len(frames[i]) // channels

        await paced(len(frames), one, frame_ms=frame_ms)

    async def pause(self, seconds: float) -> None:
        """A pause (e.g. a secure IVR step): ``paused``, no audio, ``resumed`` with the audio
        not sent (``discarded``) from where it stopped (``start``)."""
        start = self.samples
        await self.send("paused")
        began = time.monotonic()
        await asyncio.sleep(seconds)
        discarded = time.monotonic() - began
        self.samples += int(discarded * 8000)
        await self.send("resumed", start=f"PT{start / 8000:.3f}S", discarded=f"PT{discarded:.3f}S")

    async def close(self, reason: str = "end") -> dict[str, Any]:
        """The close transaction, then the socket's close: the ``closed`` message."""
        await self.send("close", reason=reason)
        closed = await self.expect("closed")
        assert self.ws is not None
        await self.ws.close(1000)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return closed
