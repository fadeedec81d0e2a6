"""Media-fork peers for the tests, written from the protocols' published sources.

``AudioSocketPeer`` behaves as Asterisk's ``AudioSocket()`` application does
(``res/res_audiosocket.c``, ``apps/app_audiosocket.c``; docs/media-forks.md §1): it connects,
sends the UUID frame, then one 320-byte signed-linear 8 kHz frame every 20 ms, DTMF as
one-digit frames, and a hangup frame (kind 0x00, length 0) when the channel hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import soxr
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge.core import g711
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


# chan_websocket's formats: optimal_frame_size for 20 ms (``default_ms * minimum_bytes /
# minimum_ms`` of the codec, channels/chan_websocket.c) and how a 16 kHz float signal is coded.
ASTERISK_FRAME_BYTES = {"ulaw": 160, "alaw": 160, "slin": 320, "slin16": 640}


def asterisk_audio(fmt: str, audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> the bytes a WebSocket channel in ``fmt`` sends."""
    from bridge.core.g711 import encode_alaw, encode_ulaw

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
        assert self.ws is not None
        start = time.monotonic()
        size = self.frame_bytes
        for i, at in enumerate(range(0, len(audio), size)):
            chunk = audio[at : at + size]
            await self.ws.send(chunk + bytes(size - len(chunk)))
            if dtmf_at and i in dtmf_at:
                await self.ws.send(self.dtmf_end(dtmf_at[i]))
            delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

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
        headers = None
        if self.auth is not None:
            basic = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers = {"Authorization": f"Basic {basic}"}
        self.ws = await connect(
            self.url,
            additional_headers=headers,
            subprotocols=[Subprotocol("audio.jambonz.org")],
        )
        first = {"sampleRate": sample_rate, "mixType": mix_type} | call_info | (metadata or {})
        await self.ws.send(json.dumps(first, separators=(",", ":")))

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

    async def dtmf(self, digit: str, duration: int = 1280) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"event": "dtmf", "dtmf": digit, "duration": duration}))

    async def hangup(self) -> None:
        assert self.ws is not None
        await self.ws.close(1000)


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
        self.received: list[dict[str, object]] = []
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
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.received.append(json.loads(message))

    async def stream(self, pcm: bytes, *, frame_bytes: int = 320) -> None:
        assert self.ws is not None
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), frame_bytes)):
            chunk = pcm[at : at + frame_bytes]
            await self.ws.send(chunk + bytes(frame_bytes - len(chunk)))
            delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self, timeout_s: float = 30) -> tuple[int | None, str | None]:
        """``{"type":"stop"}``, then wait for the server to close: its close code and reason."""
        assert self.ws is not None and self._reader is not None
        await self.ws.send(json.dumps({"type": "stop"}, separators=(",", ":")))
        await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)
        return self.ws.close_code, self.ws.close_reason


def ulaw8k(audio16k: npt.NDArray[np.float32]) -> bytes:
    """16 kHz float speech -> 8 kHz G.711 µ-law (what Twilio Media Streams send)."""
    return g711.encode_ulaw(np.frombuffer(slin8k(audio16k), "<i2"))


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
        await self.ws.send(
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        )
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
        start = time.monotonic()
        frames = max(len(a) for a in audio.values()) // 160
        for i in range(frames):
            at_ms = i * FRAME_MS
            for track, ulaw in audio.items():
                gone = (skip_ms or {}).get(track)
                if gone and gone[0] <= at_ms < gone[1]:
                    continue
                chunk = ulaw[i * 160 : (i + 1) * 160]
                await self.media(track, chunk + b"\xff" * (160 - len(chunk)), at_ms)
            if dtmf_at_ms and at_ms in dtmf_at_ms:
                await self.send("dtmf", dtmf={"track": "inbound_track", "digit": dtmf_at_ms[at_ms]})
            delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self.send("stop", stop=stop)
        assert self.ws is not None
        await self.ws.close(1000)


def interleave_ulaw(left: bytes, right: bytes) -> bytes:
    """Two 1-byte-per-sample channels (µ-law) -> one interleaved stream (shorter padded with
    µ-law silence, 0xFF)."""
    n = max(len(left), len(right))
    channels = [np.frombuffer(c.ljust(n, b"\xff"), np.uint8) for c in (left, right)]
    return np.stack(channels, axis=1).tobytes()


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
        from bridge.core.forks.httpsig import sign

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
        self._reader = asyncio.create_task(self._read())
        offered = media or [
            {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
            {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
        ]
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

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.received.append(json.loads(message))
                self._arrived.set()

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
        assert self.ws is not None
        size = 8 * frame_ms * channels
        start = time.monotonic()
        for i, at in enumerate(range(0, len(audio), size)):
            chunk = audio[at : at + size].ljust(size, b"\xff")
            await self.ws.send(chunk)
            self.samples += len(chunk) // channels
            delay = start + (i + 1) * frame_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

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
