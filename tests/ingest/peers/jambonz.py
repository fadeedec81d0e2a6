"""jambonz's two ways in: the ``listen`` verb (``JambonzListenPeer``) and the bridge as a
custom speech vendor (``JambonzSttPeer``)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.ingest.peers.common import collect, send_paced


class JambonzListenPeer:
    """jambonz's ``listen`` verb (jambonz-feature-server ``lib/tasks/listen.js``, the
    ``webhooks/listen`` docs): a WebSocket with the subprotocol ``audio.jambonz.org`` and, with
    ``wsAuth``, HTTP Basic auth; first one text frame, ``Object.assign({sampleRate, mixType},
    callInfo, metadata)``; then binary L16 little-endian, 20 ms per message, ``stereo``
    interleaved (caller left); ``passDtmf`` digits as ``{"event": "dtmf", ...}`` text; a normal
    close (1000) when the verb ends."""

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None) -> None:
        self.url = url
        self.auth = auth
        self.ws: ClientConnection | None = None

    @staticmethod
    def call_info(call_sid: str, **more: object) -> dict[str, object]:
        """``CallInfo.toJSON()`` of an inbound call (``lib/session/call-info.js``)."""
        return {
            "callSid": call_sid,
            "direction": "inbound",
            "from": "+15083084809",
            "to": "+15083728363",
            "callId": f"{uuid.uuid4()}@10.0.0.1",
            "sipStatus": 200,
            "sipReason": "OK",
            "callStatus": "in-progress",
            "accountSid": "4bfe85c1-96bb-4af7-ac83-68fe7ebd562d",
            "traceId": "18228daa536f82e0ec29074e7bf47b89",
            "applicationSid": "7087fe50-8acb-4f3b-b820-97b573723aab",
            "fsSipAddress": "10.0.0.2:5060",
            **more,
        }

    async def connect(
        self,
        call_info: dict[str, object],
        *,
        sample_rate: int = 8000,
        mix_type: str = "mono",
        metadata: dict[str, object] | None = None,
    ) -> None:
        self.ws = await connect(
            self.url,
            additional_headers=basic_auth(*self.auth) if self.auth is not None else None,
            subprotocols=[Subprotocol("audio.jambonz.org")],
        )
        first = {"sampleRate": sample_rate, "mixType": mix_type} | call_info | (metadata or {})
        await self.ws.send(json.dumps(first, separators=(",", ":")))

    async def stream(self, pcm: bytes, *, frame_bytes: int) -> None:
        """Send ``pcm`` (already interleaved) paced in real time, ``frame_bytes`` per 20 ms."""
        assert self.ws is not None
        await send_paced(self.ws.send, pcm, frame_bytes)

    async def dtmf(self, digit: str, duration: int = 1280) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"event": "dtmf", "dtmf": digit, "duration": duration}))

    async def hangup(self) -> None:
        assert self.ws is not None
        await self.ws.close(1000)


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The ``Authorization: Basic`` header of the listen verb's ``wsAuth``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class JambonzSttPeer:
    """jambonz using the bridge as a custom speech vendor (``mod_jambonz_transcribe``:
    ``audio_pipe.cpp`` adds ``Authorization: Bearer <apiKey>`` and names no subprotocol;
    ``jb_transcribe_glue.cpp`` ``sendStartMessage`` sends the start as unformatted JSON, then
    LINEAR16 8 kHz mono; the docs' ``stop`` ends it and the server closes).  ``received`` holds
    the server's JSON messages, in order, until it closes."""

    def __init__(self, url: str, *, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.ws: ClientConnection | None = None
        self.received: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(
        self, *, language: str = "en-US", interim: bool = False, options: object = None
    ) -> None:
        self.ws = await connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.api_key}"}
        )
        start = {
            "type": "start",
            "language": language,
            "format": "raw",
            "encoding": "LINEAR16",
            "interimResults": interim,
            "sampleRateHz": 8000,
            "options": {} if options is None else options,
        }
        await self.ws.send(json.dumps(start, separators=(",", ":")))
        self._reader = asyncio.create_task(collect(self.ws, self.received))

    async def stream(self, pcm: bytes, *, frame_bytes: int = 320) -> None:
        assert self.ws is not None
        await send_paced(self.ws.send, pcm, frame_bytes)

    async def stop(self, timeout_s: float = 30) -> tuple[int | None, str | None]:
        """``{"type":"stop"}``, then wait for the server to close: its close code and reason."""
        assert self.ws is not None and self._reader is not None
        await self.ws.send(json.dumps({"type": "stop"}, separators=(",", ":")))
        await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)
        return self.ws.close_code, self.ws.close_reason
