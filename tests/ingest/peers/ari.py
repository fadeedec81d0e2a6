"""``FakeAsterisk``: Asterisk's side of ARI (the Asterisk REST Interface) and of ARI
``externalMedia`` over RTP, for testing an ARI controller without an Asterisk.

Written from Asterisk's sources (github.com/asterisk/asterisk, master of 2026-08):

* ``rest-api/api-docs/channels.json``, ``bridges.json``, ``events.json``, ``asterisk.json``:
  the operations, their parameters (``snoop``: ``spy``/``whisper`` in none|both|out|in,
  default none, ``app`` required, ``appArgs``, ``snoopId``; ``externalMedia``: ``app`` and
  ``format`` required, ``external_host``, ``encapsulation`` rtp, ``transport`` udp,
  ``connection_type`` client, ``direction`` both by default, ``channelId``, ``variables`` in
  the body; ``addChannel``: ``channel`` a comma list), their error codes, the models
  (Channel, Bridge, StasisStart, StasisEnd, ChannelHangupRequest, ChannelDestroyed,
  ChannelEnteredBridge, ChannelLeftBridge; every Event has ``type``, ``timestamp``,
  ``application``, ``asterisk_id``) and ``GET /events?app=...[&subscribeAll=]`` as a WebSocket
  upgrade with the subprotocol ``ari``;
* ``res/res_ari.c``: HTTP Basic auth, else ``?api_key=user:password``, checked before the path
  (401 ``{"message": "Authentication required"}`` with ``WWW-Authenticate: Basic``); errors are
  ``{"message": ...}``;
* ``res/ari/resource_channels.c``: the order of the checks in ``snoop`` (spy, whisper, both
  none, app, then 404 for the channel) and ``externalMedia`` (app, transport/encapsulation,
  ``external_host`` required for a client and ``<host>:<port>``, format, direction; the
  channel is ``UnicastRTP/<host:port>/c(<format>)``); query parameters may also come in a
  JSON body (``*_parse_body``), which wins;
* ``res/res_stasis_snoop.c``: snoop channels are named ``Snoop/<uniqueid>-%08x``, are ``Up``
  and enter ``Stasis(<app>,<appArgs>)``; they go when the channel they snoop goes;
* ``channels/chan_rtp.c``: ``UnicastRTP/<host:port>-%p``, variables
  ``UNICASTRTP_LOCAL_ADDRESS`` and ``UNICASTRTP_LOCAL_PORT`` (the RTP socket's own address);
* ``main/rtp_engine.c`` / ``res/res_rtp_asterisk.c``: no SDP, so the payload type is the
  *first* static mapping of the format (``find_static_payload_type``): µ-law 0, A-law 8,
  slin 10 (10 and 11 both map slin; 10 comes first), slin16 118; SSRC, sequence number and
  timestamp start random, the first packet has the marker bit.

RTP (RFC 3550 §5.1): version 2, 20 ms per packet paced in real time on an absolute schedule
(:func:`.common.paced`), timestamps advancing by the samples of a packet (160 at 8 kHz, 320
for slin16); L16 payloads are big-endian (RFC 3551 §4.5.11, "network byte order").

Media: an externalMedia channel in a bridge with a snoop of the call's channel gets the snoop's
audio: ``spy=in`` what the channel sends into Asterisk (the caller's voice), ``spy=out`` what
Asterisk sends to it (the callee's voice), ``spy=both`` the two mixed.  A snoop gives frames
every 20 ms (silence when there is no audio) until the call ends.

Events go to the WebSockets subscribed to the channel's application while the channel is in
it (StasisStart up to its StasisEnd), or to every ``subscribeAll=true`` socket: a channel sent
on with ``continue`` has left the application, so its hangup reaches only the latter.
Only IPv4 ``external_host`` values are served (the RTP sockets are on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import random
import re
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.ingest.peers.asterisk_ws import ASTERISK_FRAME_BYTES, asterisk_audio
from tests.ingest.peers.common import FRAME_MS, frames_of, paced

RTP_PAYLOAD_TYPES = {"ulaw": 0, "alaw": 8, "slin": 10, "slin16": 118}
RTP_CLOCK_HZ = {"ulaw": 8000, "alaw": 8000, "slin": 8000, "slin16": 16000}
SILENCE = {"ulaw": b"\xff", "alaw": b"\xd5", "slin": b"\x00", "slin16": b"\x00"}
RTP_HEADER = struct.Struct("!BBHII")
SPEECH_RATE = 16000  # the peers' speech: 16 kHz float
SETTLE_S = 0.2  # set-up is done when the routes exist and no request came for this long
NORMAL_CLEARING = {"cause": 16, "cause_txt": "Normal Clearing"}

Audio = npt.NDArray[np.float32]


def rtp_audio(fmt: str, audio16k: Audio) -> bytes:
    """16 kHz float speech -> the RTP payload bytes of ``fmt`` (L16 big-endian)."""
    data = asterisk_audio(fmt, audio16k)
    if fmt in ("slin", "slin16"):
        return np.frombuffer(data, "<i2").astype(">i2").tobytes()
    return data


def _now() -> str:
    """ARI's Date: ``ast_json_timeval`` (``%Y-%m-%dT%H:%M:%S.%3q%z``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class _Rtp:
    """One externalMedia channel's RTP sender: its UDP socket (bound when the channel is made,
    its port the channel's ``UNICASTRTP_LOCAL_PORT``) and the stream's header state.  A plain
    non-blocking socket: asyncio's transports drop empty datagrams, which the fuzz sends."""

    def __init__(self, fmt: str, remote: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.remote = remote
        self.payload_type = RTP_PAYLOAD_TYPES[fmt]
        self.samples = RTP_CLOCK_HZ[fmt] * FRAME_MS // 1000
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sent = 0

    def send(self, payload: bytes) -> None:
        marker = 0x80 if self.sent == 0 else 0
        header = RTP_HEADER.pack(0x80, marker | self.payload_type, self.seq, self.ts, self.ssrc)
        self.send_raw(header + payload)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.samples) & 0xFFFFFFFF

    def send_raw(self, datagram: bytes) -> None:
        with contextlib.suppress(OSError):  # a full buffer or a closed socket: dropped
            self.sock.sendto(datagram, self.remote)
            self.sent += 1

    def close(self) -> None:
        self.sock.close()


@dataclass
class AriChannel:
    """A channel as the peer keeps it; :meth:`json` is ARI's Channel model."""

    id: str
    name: str
    app: str | None  # the Stasis application it is in (None once it left)
    app_data: str
    caller: tuple[str, str] = ("", "")
    connected: tuple[str, str] = ("", "")
    dialplan: tuple[str, str, int] = ("default", "s", 1)
    variables: dict[str, str] = field(default_factory=dict)
    spy: str = "none"  # a snoop channel's direction
    snooped: str | None = None  # the channel a snoop channel snoops
    fmt: str | None = None  # an externalMedia channel's format
    rtp: _Rtp | None = None  # an externalMedia channel's RTP
    bridge: str | None = None
    created: str = field(default_factory=_now)

    def json(self) -> dict[str, Any]:
        context, exten, priority = self.dialplan
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": "Up",
            "protocol_id": "",
            "caller": {"name": self.caller[0], "number": self.caller[1]},
            "connected": {"name": self.connected[0], "number": self.connected[1]},
            "accountcode": "",
            "dialplan": {
                "context": context,
                "exten": exten,
                "priority": priority,
                "app_name": "Stasis" if self.app else "",
                "app_data": self.app_data if self.app else "",
            },
            "creationtime": self.created,
            "language": "en",
        }
        if self.variables:
            body["channelvars"] = dict(self.variables)
        return body


@dataclass
class AriBridge:
    """A bridge; :meth:`json` is ARI's Bridge model."""

    id: str
    name: str
    bridge_type: str
    channels: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "technology": "simple_bridge",
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": self.created,
            "video_mode": "none",
        }


@dataclass
class _Subscriber:
    apps: list[str]
    subscribe_all: bool
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False


@dataclass
class _Req:
    params: dict[str, str]
    path: dict[str, str]
    body: dict[str, Any]


class _Ari(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@dataclass
class AriCall:
    """One call the peer placed: its channel, what the controller made for it and the RTP
    packets sent, per snoop direction (``in``, ``out``, ``both``) and per externalMedia channel.
    """

    channel_id: str
    created_channels: list[str] = field(default_factory=list)
    created_bridges: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    packets: dict[str, int] = field(default_factory=dict)
    started_at_ms: int | None = None  # wall clock (epoch ms) of the first RTP packet
    _peer: FakeAsterisk | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Wait until the audio has been sent (or ``timeout_s``), then hang up."""
        assert self._task is not None
        await asyncio.wait({self._task}, timeout=timeout_s)
        await self.hangup()

    async def hangup(self) -> None:
        """The caller hangs up now: the audio stops, the snoops go, the channel goes."""
        assert self._task is not None and self._peer is not None
        self._task.cancel()
        await asyncio.wait({self._task})
        self._peer.hang_up(self.channel_id, request=True)


class FakeAsterisk:
    """Asterisk's ARI HTTP server (REST under ``/ari`` and the events WebSocket) and the RTP of
    its externalMedia channels, in this event loop on 127.0.0.1 (``async with``)."""

    def __init__(
        self, *, user: str = "bridge", password: str = "secret", asterisk_id: str | None = None
    ) -> None:
        self.user = user
        self.password = password
        self.asterisk_id = asterisk_id or ":".join(f"{b:02x}" for b in random.randbytes(6))
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.event_connections = 0
        self.channels: dict[str, AriChannel] = {}
        self.bridges: dict[str, AriBridge] = {}
        self.port = 0
        self._calls: dict[str, AriCall] = {}
        self._subscribers: list[_Subscriber] = []
        self._change = asyncio.Event()
        self._ids = itertools.count(1)
        self._snoops = itertools.count(1)
        self._server: _Quiet | None = None
        self._serving: asyncio.Task[None] | None = None
        Handler = Callable[[_Req], Awaitable[Response]]
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/ari/channels/externalMedia", self._external_media),
            ("POST", "/ari/channels/(?P<channel>[^/]+)/snoop(?:/(?P<snoop>[^/]+))?", self._snoop),
            ("POST", "/ari/channels/(?P<channel>[^/]+)/continue", self._continue),
            ("GET", "/ari/channels/(?P<channel>[^/]+)", self._get_channel),
            ("DELETE", "/ari/channels/(?P<channel>[^/]+)", self._hangup),
            ("POST", "/ari/bridges(?:/(?P<bridge>[^/]+))?", self._create_bridge),
            ("POST", "/ari/bridges/(?P<bridge>[^/]+)/addChannel", self._add_channel),
            ("DELETE", "/ari/bridges/(?P<bridge>[^/]+)", self._destroy_bridge),
            ("GET", "/ari/asterisk/info", self._info),
        ]
        self._routes = [(m, re.compile(p), h) for m, p, h in routes]

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The HTTP base, e.g. ``http://127.0.0.1:8088`` (ARI is under ``/ari``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ari/events"

    async def start(self) -> None:
        app = Starlette(
            routes=[
                WebSocketRoute("/ari/events", self._events),
                Route("/{path:path}", self._rest, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        self._server = _Quiet(config)
        self._serving = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started or self._serving.done():
                break
            await asyncio.sleep(0.01)
        assert self._server.started, "the fake Asterisk's HTTP server did not start"
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        tasks = [c._task for c in self._calls.values() if c._task is not None]
        for channel_id in list(self._calls):
            self.hang_up(channel_id, request=True)
        if tasks:
            await asyncio.wait(tasks)
        for channel in self.channels.values():
            if channel.rtp is not None:
                channel.rtp.close()
        await self.drop_events()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._serving, 10)

    async def __aenter__(self) -> FakeAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drop_events(self) -> None:
        """Close every events WebSocket (code 1001, going away), as an Asterisk restart does."""
        subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.dropped = True
            subscriber.queue.put_nowait(None)
        await self._until(lambda: not any(s in self._subscribers for s in subscribers), 5.0)

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        caller_audio: Audio | None = None,
        callee_audio: Audio | None = None,
        *,
        hangup_after_s: float | None = None,
        **start: Any,
    ) -> AriCall:
        """Place a call (:meth:`start_call`, same arguments), send its audio and hang up when
        the longer side has been sent (or after ``hangup_after_s``)."""
        call = await self.start_call(caller_audio, callee_audio, **start)
        await call.wait(hangup_after_s)
        return call

    async def start_call(
        self,
        caller_audio: Audio | None = None,
        callee_audio: Audio | None = None,
        *,
        caller: tuple[str, str] = ("Alice", "+15551230001"),
        callee: tuple[str, str] = ("Bob", "+15551230002"),
        app: str = "bridge",
        channel_id: str | None = None,
        variables: dict[str, str] | None = None,
        directions: Collection[str] | None = None,
        setup_timeout_s: float = 5.0,
        raw: Sequence[bytes] | None = None,
        raw_interval_ms: int = 0,
    ) -> AriCall:
        """A PJSIP channel from ``caller`` to ``callee`` enters ``Stasis(app)`` (StasisStart);
        once the controller has bridged a snoop of it with an externalMedia channel (each of
        ``directions``, else at least one and every snoop it made, then nothing new for
        :data:`SETTLE_S`), the audio starts in the background: the caller's and callee's 16 kHz
        speech, or with ``raw`` these datagrams as they are from every routed externalMedia
        socket, one per ``raw_interval_ms``.  Raises ``AssertionError`` naming what is missing
        after ``setup_timeout_s``."""
        deadline = asyncio.get_running_loop().time() + setup_timeout_s
        await self._until(
            lambda: any(s.subscribe_all or app in s.apps for s in self._subscribers),
            setup_timeout_s,
            f"no events WebSocket subscribed to {app!r} within {setup_timeout_s} s",
        )
        channel = AriChannel(
            id=channel_id or self._new_id(),
            name=f"PJSIP/{caller[0].lower() or 'anonymous'}-{next(self._ids):08x}",
            app=app,
            app_data=app,
            caller=caller,
            connected=callee,
            dialplan=("from-internal", callee[1], 3),
            variables=dict(variables or {}),
        )
        self.channels[channel.id] = channel
        call = AriCall(channel.id, _peer=self)
        self._calls[channel.id] = call
        self._emit("StasisStart", channel, args=[])
        self._touch()
        await self._settle(call, directions, deadline)
        if raw is not None:
            media = self._send_raw(call, raw, raw_interval_ms)
        else:
            media = self._stream(call, caller_audio, callee_audio)
        call._task = asyncio.create_task(media)
        return call

    def routes(self, call_channel: str) -> dict[str, set[str]]:
        """externalMedia channel id -> the spy directions bridged with it, for a call."""
        routes: dict[str, set[str]] = {}
        for bridge in self.bridges.values():
            members = [self.channels[c] for c in bridge.channels]
            spies = {c.spy for c in members if c.snooped == call_channel and c.spy != "none"}
            for member in members:
                if spies and member.rtp is not None:
                    routes.setdefault(member.id, set()).update(spies)
        return routes

    async def _settle(
        self, call: AriCall, directions: Collection[str] | None, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ready = self._ready(call.channel_id, directions)
            left = deadline - loop.time()
            change = self._change
            try:
                await asyncio.wait_for(
                    change.wait(), max(0.0, min(SETTLE_S, left) if ready else left)
                )
            except TimeoutError:
                if ready:
                    return
                self.hang_up(call.channel_id, request=True)
                raise AssertionError(self._missing(call, directions)) from None

    def _ready(self, channel_id: str, directions: Collection[str] | None) -> bool:
        routes = self.routes(channel_id)
        routed = set().union(*routes.values()) if routes else set()
        if directions is not None:
            return bool(routed) and set(directions) <= routed
        snoops = [c for c in self.channels.values() if c.snooped == channel_id and c.spy != "none"]
        return bool(routes) and all(self._bridged_to_media(s) for s in snoops)

    def _bridged_to_media(self, channel: AriChannel) -> bool:
        bridge = self.bridges.get(channel.bridge or "")
        return bridge is not None and any(self.channels[c].rtp for c in bridge.channels)

    def _missing(self, call: AriCall, directions: Collection[str] | None) -> str:
        routed = sorted(set().union(*self.routes(call.channel_id).values()))
        wanted = sorted(directions) if directions is not None else "at least one"
        seen = "\n  ".join(f"{m} {p} {q}" for m, p, q in self.requests) or "(none)"
        return (
            f"the controller did not bridge a snoop of {call.channel_id} with an externalMedia "
            f"channel: directions wanted {wanted}, bridged {routed or 'none'}; "
            f"REST requests seen:\n  {seen}"
        )

    async def _stream(
        self, call: AriCall, caller_audio: Audio | None, callee_audio: Audio | None
    ) -> None:
        empty = np.zeros(0, np.float32)
        caller_audio = empty if caller_audio is None else caller_audio
        callee_audio = empty if callee_audio is None else callee_audio
        size = SPEECH_RATE * FRAME_MS // 1000
        count = -(-max(len(caller_audio), len(callee_audio)) // size)
        mixed = np.zeros(count * size, np.float32)
        mixed[: len(caller_audio)] += caller_audio
        mixed[: len(callee_audio)] += callee_audio
        audio = {"in": caller_audio, "out": callee_audio, "both": mixed}
        frames: dict[tuple[str, str], list[bytes]] = {}

        def frame(which: str, fmt: str, i: int) -> bytes:
            if (which, fmt) not in frames:
                data = rtp_audio(fmt, audio[which].astype(np.float32))
                frames[which, fmt] = frames_of(data, ASTERISK_FRAME_BYTES[fmt], SILENCE[fmt])
            got = frames[which, fmt]
            return got[i] if i < len(got) else SILENCE[fmt] * ASTERISK_FRAME_BYTES[fmt]

        async def tick(i: int) -> None:
            for ext, spies in self.routes(call.channel_id).items():
                channel = self.channels[ext]
                assert channel.rtp is not None and channel.fmt is not None
                which = next(iter(spies)) if len(spies) == 1 else "both"
                channel.rtp.send(frame(which, channel.fmt, i))
                call.sent[which] = call.sent.get(which, 0) + 1
                call.packets[ext] = call.packets.get(ext, 0) + 1

        call.started_at_ms = int(time.time() * 1000)
        await paced(count, tick)

    async def _send_raw(self, call: AriCall, raw: Sequence[bytes], interval_ms: int) -> None:
        async def one(i: int) -> None:
            for ext in self.routes(call.channel_id):
                rtp = self.channels[ext].rtp
                assert rtp is not None
                rtp.send_raw(raw[i])
                call.packets[ext] = call.packets.get(ext, 0) + 1
            if interval_ms == 0:
                await asyncio.sleep(0)  # let the receiver in this loop read

        await paced(len(raw), one, frame_ms=interval_ms)

    def hang_up(self, channel_id: str, *, request: bool) -> None:
        """The channel goes (ChannelHangupRequest if ``request``, StasisEnd if it is in an
        application, ChannelDestroyed), with the snoops on it; its RTP stops."""
        channel = self.channels.pop(channel_id, None)
        if channel is None:
            return
        if request:
            self._emit("ChannelHangupRequest", channel, cause=16)
        for snoop in [c for c in self.channels.values() if c.snooped == channel_id]:
            self.hang_up(snoop.id, request=False)
        self._leave_bridge(channel)
        app = channel.app  # hung up in the application: it sees the channel destroyed too
        self._leave_stasis(channel)
        self._emit("ChannelDestroyed", channel, to=app, **NORMAL_CLEARING)
        if channel.rtp is not None:
            channel.rtp.close()
        call = self._calls.pop(channel_id, None)
        if call is not None and call._task is not None and call._task is not asyncio.current_task():
            call._task.cancel()
        self._touch()

    # -- events ------------------------------------------------------------------------------

    def _emit(self, kind: str, channel: AriChannel, *, to: str | None = None, **body: Any) -> None:
        """Send an event about ``channel`` to the sockets of its application (or ``to``)."""
        to = to or channel.app
        for subscriber in self._subscribers:
            if subscriber.subscribe_all:
                app = subscriber.apps[0]
            elif to in subscriber.apps:
                app = to
            else:
                continue
            event = {"type": kind, "timestamp": _now(), "channel": channel.json()} | body
            event |= {"asterisk_id": self.asterisk_id, "application": app}
            subscriber.queue.put_nowait(json.dumps(event))

    def _leave_stasis(self, channel: AriChannel) -> None:
        if channel.app is not None:
            self._emit("StasisEnd", channel)
            channel.app = None

    def _leave_bridge(self, channel: AriChannel) -> None:
        bridge = self.bridges.get(channel.bridge or "")
        if bridge is not None and channel.id in bridge.channels:
            bridge.channels.remove(channel.id)
            self._emit("ChannelLeftBridge", channel, bridge=bridge.json())
        channel.bridge = None

    async def _events(self, ws: WebSocket) -> None:
        params = dict(ws.query_params)
        try:
            self._authorize(ws.headers.get("authorization"), params)
            apps = [a for a in params.get("app", "").split(",") if a]
            if not apps:
                raise _Ari(400, "Missing params: app")
        except _Ari as error:
            self._record("GET", ws.url.path, params)
            await ws.send_denial_response(self._error(error))
            return
        self._record("GET", ws.url.path, params)
        offered = ws.scope.get("subprotocols", [])
        await ws.accept("ari" if "ari" in offered else None)
        subscriber = _Subscriber(apps, params.get("subscribeAll", "").lower() == "true")
        self._subscribers.append(subscriber)
        self.event_connections += 1
        self._touch()

        async def closed() -> None:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
            subscriber.queue.put_nowait(None)

        reader = asyncio.create_task(closed())
        try:
            while (message := await subscriber.queue.get()) is not None:
                await ws.send_text(message)
            if subscriber.dropped:
                await ws.close(1001)
        except Exception:  # the client went away while we wrote
            pass
        finally:
            reader.cancel()
            self._subscribers.remove(subscriber)
            self._touch()

    # -- REST --------------------------------------------------------------------------------

    async def _rest(self, request: Request) -> Response:
        params = dict(request.query_params)
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            loaded = json.loads(await request.body() or b"{}")
            body = loaded if isinstance(loaded, dict) else {}
        for key, value in body.items():  # Asterisk's *_parse_body: the body wins
            if isinstance(value, str | int | float | bool):
                params[key] = str(value).lower() if isinstance(value, bool) else str(value)
        self._record(request.method, request.url.path, params)
        try:
            self._authorize(request.headers.get("authorization"), params)
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(request.url.path)
                if match and method == request.method:
                    groups = {k: v for k, v in match.groupdict().items() if v is not None}
                    return await handler(_Req(params, groups, body))
            raise _Ari(404, "Resource not found")
        except _Ari as error:
            return self._error(error)

    def _record(self, method: str, path: str, params: dict[str, str]) -> None:
        self.requests.append((method, path, {k: v for k, v in params.items() if k != "api_key"}))

    def _authorize(self, header: str | None, params: dict[str, str]) -> None:
        """``authenticate_user`` of res_ari.c: HTTP Basic, else ``api_key``."""
        given = params.get("api_key")
        if header is not None:
            scheme, _, token = header.partition(" ")
            try:
                given = base64.b64decode(token, validate=True).decode() if scheme == "Basic" else ""
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        if given != f"{self.user}:{self.password}":
            raise _Ari(401, "Authentication required")

    @staticmethod
    def _error(error: _Ari) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'}
        return JSONResponse(
            {"message": error.message},
            status_code=error.status,
            headers=headers if error.status == 401 else None,
        )

    def _channel(self, channel_id: str, status: int = 404) -> AriChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _Ari(status, "Provided channel was not found")
        return channel

    def _new_id(self) -> str:
        return f"{int(time.time())}.{next(self._ids)}"

    def _add(self, channel: AriChannel) -> None:
        if channel.id in self.channels:
            raise _Ari(409, "Channel with given unique ID already exists")
        self.channels[channel.id] = channel
        for call in self._calls.values():
            call.created_channels.append(channel.id)
        self._emit("StasisStart", channel, args=[a for a in channel.app_data.split(",")[1:]])
        self._touch()

    async def _snoop(self, req: _Req) -> Response:
        spy = req.params.get("spy") or "none"
        whisper = req.params.get("whisper") or "none"
        app = req.params.get("app", "")
        if spy not in ("none", "both", "out", "in"):
            raise _Ari(400, "Invalid direction specified for spy")
        if whisper not in ("none", "both", "out", "in"):
            raise _Ari(400, "Invalid direction specified for whisper")
        if spy == "none" and whisper == "none":
            raise _Ari(400, "Direction must be specified for at least spy or whisper")
        if not app:
            raise _Ari(400, "Application name is required")
        target = self._channel(req.path["channel"])
        app_args = req.params.get("appArgs", "")
        snoop = AriChannel(
            id=req.path.get("snoop") or req.params.get("snoopId") or self._new_id(),
            name=f"Snoop/{target.id}-{next(self._snoops):08x}",
            app=app,
            app_data=f"{app},{app_args}" if app_args else app,
            spy=spy,
            snooped=target.id,
        )
        self._add(snoop)
        return JSONResponse(snoop.json())

    async def _external_media(self, req: _Req) -> Response:
        p = req.params
        if not p.get("app"):
            raise _Ari(400, "app cannot be empty")
        transport = p.get("transport") or "udp"
        encapsulation = p.get("encapsulation") or "rtp"
        if (encapsulation, transport) != ("rtp", "udp"):
            raise _Ari(400, "this fake Asterisk serves only rtp encapsulation over udp")
        if (p.get("connection_type") or "client") != "client":
            raise _Ari(400, "'server' connection_type can only be used with websocket")
        host, _, port = p.get("external_host", "").rpartition(":")
        if not host or not port.isdigit():
            raise _Ari(
                400, "external_host must be <host>:<port> for all transports other than websocket"
            )
        fmt = p.get("format", "")
        if not fmt:
            raise _Ari(400, "format cannot be empty")
        if (p.get("direction") or "both") not in ("both", "in", "out"):
            raise _Ari(400, "Invalid direction specified")
        if fmt not in RTP_PAYLOAD_TYPES:
            raise _Ari(400, f"Provided format ({fmt}) was not found")
        rtp = _Rtp(fmt, (host.strip("[]"), int(port)))
        variables = {k: str(v) for k, v in (req.body.get("variables") or {}).items()}
        channel = AriChannel(
            id=p.get("channelId") or self._new_id(),
            name=f"UnicastRTP/{p['external_host']}-0x{uuid.uuid4().int % 2**48:012x}",
            app=p["app"],
            app_data=",".join(filter(None, (p["app"], p.get("data")))),
            variables=variables
            | {"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": str(rtp.port)},
            fmt=fmt,
            rtp=rtp,
        )
        try:
            self._add(channel)
        except _Ari:
            rtp.close()
            raise
        return JSONResponse(channel.json())

    async def _continue(self, req: _Req) -> Response:
        channel = self._channel(req.path["channel"])
        if channel.app is None:
            raise _Ari(409, "Channel not in Stasis application")
        self._leave_bridge(channel)
        self._leave_stasis(channel)
        self._touch()
        return Response(status_code=204)

    async def _get_channel(self, req: _Req) -> Response:
        return JSONResponse(self._channel(req.path["channel"]).json())

    async def _hangup(self, req: _Req) -> Response:
        self.hang_up(self._channel(req.path["channel"]).id, request=True)
        return Response(status_code=204)

    async def _create_bridge(self, req: _Req) -> Response:
        bridge_id = req.path.get("bridge") or req.params.get("bridgeId") or str(uuid.uuid4())
        if bridge_id in self.bridges:
            raise _Ari(409, "Bridge with the same bridgeId already exists")
        types = (req.params.get("type") or "mixing").split(",")
        bridge = AriBridge(
            bridge_id, req.params.get("name", ""), "holding" if "holding" in types else "mixing"
        )
        self.bridges[bridge_id] = bridge
        for call in self._calls.values():
            call.created_bridges.append(bridge_id)
        self._touch()
        return JSONResponse(bridge.json())

    async def _add_channel(self, req: _Req) -> Response:
        bridge = self.bridges.get(req.path["bridge"])
        if bridge is None:
            raise _Ari(404, "Bridge not found")
        ids = [c for c in req.params.get("channel", "").split(",") if c]
        if not ids:
            raise _Ari(400, "Missing params: channel")
        channels = [self._channel(c, status=400) for c in ids]
        if any(c.app is None for c in channels):
            raise _Ari(422, "Channel not in Stasis application")
        for channel in channels:
            if channel.bridge != bridge.id:
                self._leave_bridge(channel)
                bridge.channels.append(channel.id)
                channel.bridge = bridge.id
                self._emit("ChannelEnteredBridge", channel, bridge=bridge.json())
        self._touch()
        return Response(status_code=204)

    async def _destroy_bridge(self, req: _Req) -> Response:
        bridge = self.bridges.get(req.path["bridge"])
        if bridge is None:
            raise _Ari(404, "Bridge not found")
        for channel_id in list(bridge.channels):
            self._leave_bridge(self.channels[channel_id])
        del self.bridges[bridge.id]
        self._touch()
        return Response(status_code=204)

    async def _info(self, req: _Req) -> Response:
        return JSONResponse({"system": {"version": "22.5.0", "entity_id": self.asterisk_id}})

    # -- waiting -----------------------------------------------------------------------------

    def _touch(self) -> None:
        """Wake everything waiting in :meth:`_until` / :meth:`_settle`."""
        self._change.set()
        self._change = asyncio.Event()

    async def _until(self, done: Callable[[], bool], timeout_s: float, why: str = "") -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    await self._change.wait()
        except TimeoutError:
            raise AssertionError(why or "timed out") from None
