"""The PBX side of ``bench_forks.py``: one sender per media-fork protocol (``--sender``).

The calls are opened one after another, as fast as the sender can, and each streams as soon as
it is connected, the way that PBX does: the handshake, the first message(s) right before the
audio, then one message per 20 ms on the call's own absolute schedule, and at the end what the
PBX does at a normal hangup, so the bridge records a hangup and no drop.  Per-message deflate
only with ``--deflate`` (of these PBXs only FreeSWITCH's mod_audio_stream offers it by
default).  Every call has two legs, leg ``2 * call`` the caller (left) and ``2 * call + 1`` the
callee (right); a leg's audio carries the impulses of leg index ``leg`` (``bench_sip.py``'s
plan).  The protocol messages are built here from the wire formats in docs/media-forks.md, not
taken from the tests' peers.

* ``audiosocket``: two TCP connections per call (UUIDs that differ in the last digit, the
  bridge pairs them by that suffix), 20 ms ``AUDIO_SLIN`` frames, ``HANGUP``.
* ``freeswitch``: one WebSocket per call (``mix=stereo&rate=8k``), a JSON text first, 640-byte
  binary frames (stereo L16), a normal close.
* ``jambonz``: the listen verb, one WebSocket per call with the subprotocol
  ``audio.jambonz.org``, the call-info JSON (``mixType: stereo``, ``sampleRate: 8000``), 640-byte
  binary frames, a normal close.
* ``asterisk``: chan_websocket, two WebSockets per call (one channel each, ``call`` and ``role``
  in the URL as ``v(call=...,role=...)`` puts them), a JSON ``MEDIA_START``, one
  ``optimal_frame_size`` binary frame per 20 ms (``slin`` 320 bytes, ``ulaw`` 160), a close
  (Asterisk's hangup).
* ``twilio``: one WebSocket per call with ``both_tracks``: ``connected``, ``start``, then per
  20 ms one ``media`` per track (160 bytes of µ-law in base64, ``chunk`` and ``timestamp`` per
  track, ``sequenceNumber`` over the stream), ``stop`` and a close.
* ``audiohook``: one WebSocket per call: ``open`` offering stereo PCMU (external, internal) and
  mono, wait for ``opened``, 320-byte binary frames (stereo PCMU, 20 ms), a ``ping`` every 5 s,
  then ``close`` (reason ``end``), wait for ``closed`` and close the socket.
* ``ari``: Asterisk's externalMedia RTP: per call the two UDP ports the bridge's ARI controller
  opened (the plan's ``rtp``: the calls were set up over ARI by ``bench_forks.py`` before the
  sender starts), one RTP packet per 20 ms to each from its own socket (``slin``: PT 10, 320
  bytes of big-endian L16; ``ulaw``: PT 0, 160 bytes), sequence and timestamp from random
  starts (RFC 3550 §5.1); the hangup is ARI's, after the sender is done.

µ-law senders encode each leg's PCM with :func:`bridge.core.g711.encode_ulaw`: the impulse
(32767) becomes µ-law's largest code, which decodes to 32124, above the sink's threshold.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from bench_sip import IMPULSE, _percentiles, impulse_packets, speech_like
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge.core.forks.audiosocket import Kind, frame
from bridge.core.g711 import encode_ulaw

ADAPTERS = ("audiosocket", "freeswitch", "jambonz", "asterisk", "twilio", "audiohook", "ari")
FRAME_S = 0.02
SAMPLES = 160  # 20 ms at 8 kHz
SECRET = "bench"
PING_EVERY = 250  # AudioHook: a ping every 250 frames (5 s)


def leg_audio(speech: np.ndarray, index: int) -> np.ndarray:
    """The leg's 8 kHz PCM16, ``speech`` with its impulses: the last sample of each impulse
    frame."""
    audio = speech.copy()
    frames = len(audio) // SAMPLES
    for packet in impulse_packets(index, frames):
        audio[(packet + 1) * SAMPLES - 1] = IMPULSE
    return audio


def chunks(data: bytes, size: int, n: int) -> list[bytes]:
    return [data[i * size : (i + 1) * size] for i in range(n)]


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two channels interleaved (left first), any sample type."""
    return np.stack([left, right], axis=1).reshape(-1)


@dataclass
class Stream:
    """One connection of the PBX, connected: what it sends first (``begin``, ``lead_s``
    before the first frame, as the PBX does right before the audio), what it sends on tick
    ``i`` (``messages[i]``, handed to ``send``), the legs it carries, and how it ends the call.

    The first message comes right before the audio, not when the connection opened: the
    bridge's clock for a stream starts when it joins the call (at the first message), and audio
    more than 1 s behind that clock is taken for a stall and preceded by silence (``ForkStream``,
    ``CATCH_UP_S``), which would shift the leg's 80 ms chunks off the 20 ms frames and add up
    to 20 ms to the measured latency.
    """

    send: Callable[[Any], Awaitable[None]]
    messages: list[Any]
    legs: tuple[int, ...]
    end: Callable[[], Awaitable[None]]
    begin: Callable[[], Awaitable[None]]
    lead_s: float = 0.0


async def ws_connect(plan: dict[str, Any], path: str, **kwargs: Any) -> ClientConnection:
    url = f"ws://127.0.0.1:{plan['port']}{path}"
    compression = "deflate" if plan["deflate"] else None
    return await connect(url, compression=compression, max_queue=None, **kwargs)


def texts(ws: ClientConnection, *messages: str) -> Callable[[], Awaitable[None]]:
    """A ``begin`` that sends ``messages``."""

    async def begin() -> None:
        for message in messages:
            await ws.send(message)

    return begin


# -- one function per protocol: a call's connections, opened, with their messages ------------


async def audiosocket(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    streams = []
    for side in (0, 1):
        uid = uuid.UUID(f"{call:031x}{side}")  # pair_by = suffix
        _, writer = await asyncio.open_connection("127.0.0.1", plan["port"])
        data = pcm[side].astype("<i2").tobytes()
        messages = [frame(Kind.AUDIO_SLIN, c) for c in chunks(data, 320, plan["frames"])]

        async def send(message: bytes, writer: asyncio.StreamWriter = writer) -> None:
            writer.write(message)

        async def hangup(writer: asyncio.StreamWriter = writer) -> None:
            writer.write(frame(Kind.HANGUP))
            await writer.drain()
            writer.close()

        async def begin(writer: asyncio.StreamWriter = writer, uid: uuid.UUID = uid) -> None:
            writer.write(frame(Kind.UUID, uid.bytes))

        streams.append(Stream(send, messages, (2 * call + side,), hangup, begin))
    return streams


async def freeswitch(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    query = f"token={SECRET}&uuid=b{call}&mix=stereo&rate=8k"
    ws = await ws_connect(plan, f"/freeswitch?{query}")
    data = stereo(*pcm).astype("<i2").tobytes()
    messages = chunks(data, 640, plan["frames"])
    begin = texts(ws, json.dumps({"call": call}))  # the metadata text
    return [Stream(ws.send, messages, (2 * call, 2 * call + 1), ws.close, begin)]


async def jambonz(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    ws = await ws_connect(
        plan, f"/jambonz?token={SECRET}", subprotocols=[Subprotocol("audio.jambonz.org")]
    )
    # Object.assign({sampleRate, mixType}, callInfo, metadata): lib/tasks/listen.js
    call_info = {
        "sampleRate": 8000,
        "mixType": "stereo",
        "callSid": f"{uuid.UUID(int=call)}",
        "direction": "inbound",
        "from": f"+1508308{call:04d}",
        "to": "+15083728363",
        "callId": f"{uuid.UUID(int=call)}@127.0.0.1",
        "sipStatus": 200,
        "callStatus": "in-progress",
        "accountSid": "4bfe85c1-96bb-4af7-ac83-68fe7ebd562d",
        "applicationSid": "7087fe50-8acb-4f3b-b820-97b573723aab",
    }
    data = stereo(*pcm).astype("<i2").tobytes()
    messages = chunks(data, 640, plan["frames"])
    begin = texts(ws, json.dumps(call_info, separators=(",", ":")))
    return [Stream(ws.send, messages, (2 * call, 2 * call + 1), ws.close, begin)]


async def asterisk(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    fmt = plan["asterisk_format"]
    size = 160 if fmt == "ulaw" else 320
    streams = []
    for side, role in enumerate(("caller", "callee")):
        ws = await ws_connect(plan, f"/asterisk?token={SECRET}&call=a{call}&role={role}")
        start = {  # _create_event_MEDIA_START, control_message_format = json
            "event": "MEDIA_START",
            "connection_id": "bridge",
            "channel": f"WebSocket/bridge/0x{2 * call + side:012x}",
            "channel_id": f"1765000000.{2 * call + side}",
            "format": fmt,
            "optimal_frame_size": size,
            "ptime": 20,
            "channel_variables": {
                "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(size),
                "MEDIA_WEBSOCKET_CONNECTION_ID": "bridge",
            },
        }
        audio = pcm[side]
        data = encode_ulaw(audio) if fmt == "ulaw" else audio.astype("<i2").tobytes()
        messages = chunks(data, size, plan["frames"])
        begin = texts(ws, json.dumps(start, separators=(",", ":")))
        streams.append(Stream(ws.send, messages, (2 * call + side,), ws.close, begin))
    return streams


async def twilio(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    ws = await ws_connect(plan, f"/twilio?token={SECRET}")
    call_sid, stream_sid = f"CA{call:032x}", f"MZ{call:032x}"
    sequence = 0

    def message(event: str, **body: Any) -> str:
        nonlocal sequence
        sequence += 1
        head = {"event": event, "sequenceNumber": str(sequence)}
        return json.dumps(head | body | {"streamSid": stream_sid})

    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    ids = {"accountSid": "AC" + "0" * 32, "callSid": call_sid}
    start = ids | {
        "streamSid": stream_sid,
        "tracks": ["inbound", "outbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    begin = texts(ws, connected, message("start", start=start))
    tracks = [chunks(encode_ulaw(audio), SAMPLES, plan["frames"]) for audio in pcm]

    async def send(i: int) -> None:  # one media per track, built as Twilio sends it
        for track, payloads in zip(("inbound", "outbound"), tracks, strict=True):
            media = {"track": track, "chunk": str(i + 1), "timestamp": str(i * 20),
                     "payload": base64.b64encode(payloads[i]).decode("ascii")}  # fmt: skip
            await ws.send(message("media", media=media))

    async def stop() -> None:
        await ws.send(message("stop", stop=ids))
        await ws.close()

    frames = list(range(plan["frames"]))
    return [Stream(send, frames, (2 * call, 2 * call + 1), stop, begin)]


class AudioHookClient:
    """Genesys's side of one AudioHook v2 session: the counters, the open and close
    transactions, a ping every :data:`PING_EVERY` frames, and a reader that keeps the server's
    last ``seq`` (``serverseq``) and hands each awaited answer over."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.seq = self.serverseq = self.frames = 0
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.ws:
                reply = json.loads(text)
                self.serverseq = reply["seq"]
                kind = reply["type"]
                for answer in list(self.waiting) if kind == "disconnect" else [kind]:
                    if answer in self.waiting:
                        self.waiting.pop(answer).set_result(reply)

    async def request(self, kind: str, answer: str | None = None, **parameters: Any) -> None:
        """Send ``kind``; with ``answer``, wait for it (a ``disconnect`` instead fails)."""
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if answer is not None:
            self.waiting[answer] = reply
        self.seq += 1
        position = f"PT{self.frames * SAMPLES / 8000:.2f}S"
        await self.ws.send(json.dumps({
            "version": "2", "id": self.session_id, "type": kind, "seq": self.seq,
            "serverseq": self.serverseq, "position": position, "parameters": parameters,
        }))  # fmt: skip
        if answer is not None:
            async with asyncio.timeout(10):
                got = await reply
            if got["type"] != answer:
                raise RuntimeError(f"AudioHook {kind} answered with {got}")

    async def send(self, audio: bytes) -> None:
        await self.ws.send(audio)
        self.frames += 1
        if self.frames % PING_EVERY == 0:
            await self.request("ping")  # its pong is read and not awaited

    async def close(self) -> None:
        """The close transaction, then the socket's close (the client closes first)."""
        await self.request("close", "closed", reason="end")
        await self.ws.close()
        await self.reader


async def audiohook(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    session_id, organization = str(uuid.uuid4()), str(uuid.UUID(int=0, version=4))
    conversation = str(uuid.UUID(int=call + 1, version=4))
    headers = {  # without an API key set on the bridge the token guards /audiohook
        "Audiohook-Organization-Id": organization,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": "bench",
    }
    ws = await ws_connect(plan, f"/audiohook?token={SECRET}", additional_headers=headers)
    client = AudioHookClient(ws, session_id)
    offer = [
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
    ]
    who = {"id": str(uuid.uuid4()), "ani": f"+4930{call:06d}", "aniName": "", "dnis": "+4940999"}

    async def begin() -> None:  # the open transaction: audio only after opened
        await client.request(
            "open", "opened", organizationId=organization, conversationId=conversation,
            participant=who, media=offer, language="en-US",
        )  # fmt: skip

    ulaw = stereo(*(np.frombuffer(encode_ulaw(a), np.uint8) for a in pcm)).tobytes()
    messages = chunks(ulaw, 2 * SAMPLES, plan["frames"])
    legs = (2 * call, 2 * call + 1)
    return [Stream(client.send, messages, legs, client.close, begin, lead_s=0.1)]


async def ari(plan: dict[str, Any], call: int, pcm: list[np.ndarray]) -> list[Stream]:
    ulaw = plan["asterisk_format"] == "ulaw"
    pt, size = (0, 160) if ulaw else (10, 320)  # main/rtp_engine.c's first static type
    streams = []
    for side, port in enumerate(plan["rtp"][call]):
        audio = pcm[side]
        data = encode_ulaw(audio) if ulaw else audio.astype(">i2").tobytes()
        seq, ts, ssrc = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        messages = [
            struct.pack("!BBHII", 0x80, pt | (0x80 if i == 0 else 0), (seq + i) & 0xFFFF,
                        (ts + i * SAMPLES) & 0xFFFFFFFF, ssrc) + payload
            for i, payload in enumerate(chunks(data, size, plan["frames"]))
        ]  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))

        async def send(packet: bytes, sock: socket.socket = sock) -> None:
            sock.send(packet)

        async def end(sock: socket.socket = sock) -> None:
            sock.close()

        async def begin() -> None:
            pass

        streams.append(Stream(send, messages, (2 * call + side,), end, begin))
    return streams


OPEN = {
    "audiosocket": audiosocket,
    "freeswitch": freeswitch,
    "jambonz": jambonz,
    "asterisk": asterisk,
    "twilio": twilio,
    "audiohook": audiohook,
    "ari": ari,
}


# -- the schedule ------------------------------------------------------------------------------


async def stream_call(stream: Stream, start: float, out: dict[str, Any]) -> None:
    """``begin`` at ``start - lead_s``, ``messages[i]`` at ``start + i * 20 ms``, then ``end``;
    record the send time of every impulse frame of the stream's legs."""
    late = out["late_ms"]
    impulses = [(leg, set(impulse_packets(leg, len(stream.messages)))) for leg in stream.legs]
    await asyncio.sleep(max(0.0, start - stream.lead_s - time.monotonic()))
    await stream.begin()
    for i, message in enumerate(stream.messages):
        due = start + i * FRAME_S
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        late.append((time.monotonic() - due) * 1000)
        sent_ns = time.monotonic_ns()
        await stream.send(message)
        for leg, packets in impulses:
            if i in packets:
                out["calls"][str(leg)]["impulses"].append([i, sent_ns])
    await stream.end()  # the PBX hangs up


async def sender(plan: dict[str, Any]) -> dict[str, Any]:
    """Open the calls one after another, each streaming as soon as it is connected; print
    ``ready <first> <last>`` (``time.monotonic()`` of the first and the last call's first
    frame) once every call is up; what was sent when."""
    calls, seconds = plan["calls"], plan["seconds"]
    plan["frames"] = n = int(seconds / FRAME_S)
    out: dict[str, Any] = {"calls": {}, "late_ms": []}
    speech = speech_like(seconds + 1)
    tasks, starts = [], []
    for call in range(calls):
        pcm = [leg_audio(speech, 2 * call + side) for side in (0, 1)]
        streams = await OPEN[plan["adapter"]](plan, call, pcm)
        starts.append(time.monotonic() + max(s.lead_s for s in streams) + 0.01)
        tasks += [asyncio.create_task(stream_call(s, starts[-1], out)) for s in streams]
        for side in (0, 1):
            out["calls"][str(2 * call + side)] = {"impulses": [], "sent": n}
    print(f"ready {starts[0]} {starts[-1]}", flush=True)
    await asyncio.gather(*tasks)
    out["late_ms"] = _percentiles(out["late_ms"])
    usage = os.times()
    out["cpu_s"] = usage.user + usage.system
    return out
