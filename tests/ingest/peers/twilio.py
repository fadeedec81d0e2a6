"""``TwilioPeer``: Twilio's side of one Media Stream."""

from __future__ import annotations

import base64
import json
import uuid

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect

from tests.ingest.peers.common import FRAME_MS, paced

CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


class TwilioPeer:
    """Twilio's side of one Media Stream, as "Media Streams - WebSocket Messages"
    (twilio.com/docs/voice/media-streams/websocket-messages) and "TwiML <Stream>" describe it:
    the upgrade carries ``X-Twilio-Signature`` (made by the ``twilio`` package's
    ``RequestValidator`` for ``signed_url``, the URL in ``<Stream url>``); then JSON text only —
    ``connected``, ``start`` (``sequenceNumber`` "1", tracks, mediaFormat µ-law 8 kHz mono,
    ``customParameters``), one ``media`` per track every 20 ms (160 bytes of µ-law in base64,
    ``chunk`` counting from "1" per track, ``timestamp`` in ms since the stream started), ``dtmf``
    on ``inbound_track``, and at the end ``stop`` and a normal close.  Every message after
    ``connected`` carries the next ``sequenceNumber`` and the ``streamSid``."""

    def __init__(
        self,
        url: str,
        *,
        call_sid: str | None = None,
        tracks: tuple[str, ...] = ("inbound", "outbound"),
        parameters: dict[str, str] | None = None,
        auth_token: str | None = None,
        signed_url: str | None = None,
        signature: str | None = None,
    ) -> None:
        self.url = url
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.account_sid = "AC" + "0" * 32
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.tracks = tracks
        self.parameters = parameters or {}
        self.signature = signature
        if auth_token is not None and signature is None:
            self.signature = RequestValidator(auth_token).compute_signature(signed_url or url, {})
        self.ws: ClientConnection | None = None
        self.sequence = 0
        self.chunks = dict.fromkeys(tracks, 0)

    async def connect(self) -> None:
        headers = {"X-Twilio-Signature": self.signature} if self.signature else None
        self.ws = await connect(self.url, additional_headers=headers)
        await self.ws.send(CONNECTED)
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": list(self.tracks),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": self.parameters,
        }
        await self.send("start", start=start)

    async def send(self, event: str, **body: object) -> None:
        assert self.ws is not None
        self.sequence += 1
        message = {"event": event, "sequenceNumber": str(self.sequence), **body}
        await self.ws.send(json.dumps(message | {"streamSid": self.stream_sid}))

    async def media(self, track: str, payload: bytes, timestamp_ms: int) -> None:
        self.chunks[track] += 1
        media = {
            "track": track,
            "chunk": str(self.chunks[track]),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(payload).decode(),
        }
        await self.send("media", media=media)

    async def stream(
        self,
        audio: dict[str, bytes],
        *,
        skip_ms: dict[str, tuple[int, int]] | None = None,
        dtmf_at_ms: dict[int, str] | None = None,
    ) -> None:
        """µ-law per track, 160 bytes per track every 20 ms in real time; ``skip_ms`` drops a
        track's media in ``[from, to)`` (as Twilio does under congestion: the time goes on)."""

        async def one(i: int) -> None:
            at_ms = i * FRAME_MS
            for track, ulaw in audio.items():
                gone = (skip_ms or {}).get(track)
                if gone and gone[0] <= at_ms < gone[1]:
                    continue
                await self.media(track, ulaw[i * 160 : (i + 1) * 160].ljust(160, b"\xff"), at_ms)
            if dtmf_at_ms and at_ms in dtmf_at_ms:
                await self.send("dtmf", dtmf={"track": "inbound_track", "digit": dtmf_at_ms[at_ms]})

        await paced(max(len(a) for a in audio.values()) // 160, one)

    async def stop(self) -> None:
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self.send("stop", stop=stop)
        assert self.ws is not None
        await self.ws.close(1000)
