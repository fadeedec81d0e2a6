"""What the media-fork tests share (tests/integration/test_fork_*.py; benchmarks/fuzz_forks.py).

* the listeners in-process, each over a fresh SQLite store: :func:`fork_socket` (the WebSocket
  listener with every protocol, its secrets those of :data:`SETTINGS`) and :func:`audiosocket`;
* :func:`ended` (the stored export once calls have ended), :func:`endpoint_of`;
* what a refused or closed connection got: :func:`refused`, :func:`closed_after`,
  :func:`closed_by_bridge`;
* the fuzz driver, :func:`fuzz`: hostile connections from ``tests/ingest/fuzz/`` 16 at a time
  until N messages, every call taken waited for until stored as ended, then a good call per
  path, the event loop's unhandled exceptions caught; :meth:`FuzzRun.assert_survived` checks
  the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.asr.client import AsrEndpoint
from bridge.config.ingest import LOOPBACK, AriConfig, AudioSocketConfig, ForkSocketConfig, allowed
from bridge.export import to_json
from bridge.ingest.ari import AriController
from bridge.ingest.audiosocket import AudioSocketServer
from bridge.ingest.fork import ForkCalls
from bridge.ingest.rtp import RtpPorts
from bridge.ingest.websocket import ForkSocketServer, fork_protocols
from storage import TranscriptStore
from tests.ingest.fuzz import Hostile
from tests.ingest.fuzz import asterisk_ws as asterisk_fuzz
from tests.ingest.fuzz import audiohook as audiohook_fuzz
from tests.ingest.fuzz import audiosocket as audiosocket_fuzz
from tests.ingest.fuzz import freeswitch as freeswitch_fuzz
from tests.ingest.fuzz import jambonz as jambonz_fuzz
from tests.ingest.fuzz import twilio as twilio_fuzz
from tests.ingest.peers import (
    AsteriskWsPeer,
    AudioHookPeer,
    AudioSocketPeer,
    FakeAsterisk,
    FreeSwitchPeer,
    JambonzListenPeer,
    JambonzSttPeer,
    TwilioPeer,
    basic_auth,
)

if TYPE_CHECKING:
    from engine_server import EngineServer
    from vllm_server import VllmServer

# The listener's secrets.
SECRET = "fork-test-secret"  # BRIDGE_FORKS_SECRET: /freeswitch, /asterisk, /audiohook
JAMBONZ_SECRET = "jambonz-api-key"  # the jambonz listener's: /jambonz-stt's Bearer key
JAMBONZ_AUTH = ("jambonz", "listen-pass:word")  # /jambonz: the listen verb's Basic auth
TWILIO_TOKEN = "twilio-auth-token-for-tests"
TWILIO_PUBLIC = "wss://bridge.example.com"  # what Twilio dials; the tests connect to 127.0.0.1
AUDIOHOOK_API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
AUDIOHOOK_CLIENT_SECRET = base64.b64encode(b"the integration's client secret").decode()
AUDIOHOOK_AUTH = {
    "audiohook_api_key": AUDIOHOOK_API_KEY,
    "audiohook_client_secret": AUDIOHOOK_CLIENT_SECRET,
}
# The listener's settings per protocol (what each test file runs it with).
SETTINGS: dict[str, dict[str, Any]] = {
    "freeswitch": {"secret": SECRET},
    "asterisk": {"secret": SECRET},
    "jambonz": {
        "secret": JAMBONZ_SECRET,
        "jambonz_username": JAMBONZ_AUTH[0],
        "jambonz_password": JAMBONZ_AUTH[1],
    },
    "twilio": {"twilio_auth_token": TWILIO_TOKEN, "public_url": TWILIO_PUBLIC, "secret": "other"},
    "audiohook": {"secret": SECRET, **AUDIOHOOK_AUTH},
}
PROTOCOLS = ("audiosocket", *SETTINGS)  # what fuzz() drives
ForkSocket = AbstractAsyncContextManager[tuple[str, TranscriptStore]]


def endpoint_of(server: EngineServer | VllmServer, **limits: Any) -> AsrEndpoint:
    return AsrEndpoint(
        url=server.url, model=server.model, api_key=server.api_key, stall_timeout_s=10, **limits
    )


@asynccontextmanager
async def _fork_calls(
    db: Path, endpoint: AsrEndpoint, rejoin_s: float
) -> AsyncIterator[tuple[ForkCalls, TranscriptStore]]:
    store = await TranscriptStore.open(db)
    calls = ForkCalls(store, endpoint=endpoint, finish_timeout_s=20, rejoin_s=rejoin_s)
    try:
        yield calls, store
    finally:
        await calls.close()
        await store.close()


@asynccontextmanager
async def fork_socket(
    db: Path,
    endpoint: AsrEndpoint,
    protocol: str = "freeswitch",
    *,
    rejoin_s: float = 1.0,
    path: str = "",
    **settings: Any,
) -> AsyncIterator[tuple[str, TranscriptStore]]:
    """The media-fork WebSocket listener on a free port with ``protocol``'s secrets
    (:data:`SETTINGS`, ``settings`` over them): ``ws://127.0.0.1:PORT`` + ``path``, the store."""
    config = ForkSocketConfig(
        enabled=True, port=0, rejoin_s=rejoin_s, **(SETTINGS[protocol] | settings)
    )
    async with _fork_calls(db, endpoint, rejoin_s) as (calls, store):
        server = ForkSocketServer(calls, config, fork_protocols())
        await server.start()
        try:
            yield f"ws://127.0.0.1:{server.port}{path}", store
        finally:
            await server.stop()


def listener(protocol: str, *, path: str = "") -> Callable[..., ForkSocket]:
    """:func:`fork_socket` with ``protocol``'s secrets: ``listener(db, endpoint, **settings)``."""
    return functools.partial(fork_socket, protocol=protocol, path=path)


@asynccontextmanager
async def audiosocket(
    db: Path, endpoint: AsrEndpoint, **config: Any
) -> AsyncIterator[tuple[AudioSocketServer, TranscriptStore]]:
    """The AudioSocket listener on a free port (``config``: :class:`AudioSocketConfig`'s)."""
    settings = AudioSocketConfig(enabled=True, port=0, **config)
    async with _fork_calls(db, endpoint, settings.rejoin_s) as (calls, store):
        server = AudioSocketServer(calls, settings)
        await server.start()
        try:
            yield server, store
        finally:
            await server.stop()


@asynccontextmanager
async def ari_controller(
    db: Path, endpoint: AsrEndpoint, pbx: FakeAsterisk, *, connected: bool = True, **config: Any
) -> AsyncIterator[tuple[AriController, TranscriptStore]]:
    """The ARI controller on ``pbx`` (``config``: :class:`AriConfig`'s), its RTP ports on
    loopback, until the block ends; ``connected``: first wait until it listens to the events."""
    settings = AriConfig(
        **{"ari_url": pbx.url, "user": pbx.user, "password": pbx.password} | config
    )
    async with _fork_calls(db, endpoint, 1.0) as (calls, store):
        ports = RtpPorts(host="127.0.0.1", permitted=lambda ip: allowed(ip, LOOPBACK))
        controller = AriController(calls, ports, settings)
        stop = asyncio.Event()
        running = asyncio.create_task(controller.run(stop))
        try:
            if connected:
                await asyncio.wait_for(controller.connected.wait(), 10)
            yield controller, store
        finally:
            stop.set()
            await running
            await ports.stop()


async def ended(store: TranscriptStore, timeout_s: float = 60, *, count: int = 1) -> dict[str, Any]:
    """The export of the newest call once ``count`` calls are stored and all have ended."""
    async with asyncio.timeout(timeout_s):
        while True:
            calls = await store.list_calls(limit=1000)
            if len(calls) >= count and all(c.ended_at_ms is not None for c in calls):
                transcript = await store.get_call(calls[0].call_id)
                assert transcript is not None
                return dict(json.loads(to_json(transcript)))
            await asyncio.sleep(0.1)


async def refused(url: str, **kwargs: Any) -> InvalidStatus:
    """The refusal of an upgrade that must be refused (``kwargs``: websockets' ``connect``)."""
    import pytest

    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, **kwargs):
            pass
    return caught.value


async def closed_after(
    url: str, messages: list[str | bytes], **kwargs: Any
) -> tuple[int | None, str | None, list[str]]:
    """Send ``messages``; the close code and reason, and the text the bridge sent first."""
    got: list[str] = []
    ws = await connect(url, **kwargs)
    with contextlib.suppress(ConnectionClosed):  # it may close before all were sent
        for message in messages:
            await ws.send(message)
        async with asyncio.timeout(10):
            while True:
                got.append(str(await ws.recv()))
    assert ws.close_code is not None, "the bridge kept the connection open"
    return ws.close_code, ws.close_reason, got


async def closed_by_bridge(peer: AudioSocketPeer) -> bool:
    """Whether the bridge closed the socket (a close, or a reset: it had unread data)."""
    assert peer.reader is not None
    try:
        return await asyncio.wait_for(peer.reader.read(), 5) == b""
    except ConnectionResetError:
        return True


def twilio_peer(url: str, **kwargs: Any) -> TwilioPeer:
    """A Twilio stream to ``url`` signed as Twilio signs ``<Stream url="PUBLIC/twilio">``."""
    return TwilioPeer(url, auth_token=TWILIO_TOKEN, signed_url=f"{TWILIO_PUBLIC}/twilio", **kwargs)


def audiohook_peer(base: str, **kwargs: Any) -> AudioHookPeer:
    """A Genesys session to ``base``/audiohook with the API key, signed."""
    secret = base64.b64decode(AUDIOHOOK_CLIENT_SECRET)
    return AudioHookPeer(
        f"{base}/audiohook", api_key=AUDIOHOOK_API_KEY, client_secret=secret, **kwargs
    )


# -- the fuzz driver ---------------------------------------------------------------------------


@dataclass
class FuzzRun:
    """What :func:`fuzz` sent and what came of it."""

    protocol: str
    seed: int
    messages: int = 0  # messages sent (AudioSocket: frames)
    connections: int = 0  # hostile connections opened
    accepted: int | None = None  # connections the AudioSocket listener took (WebSocket: None)
    outcomes: Counter[str] = field(default_factory=Counter)  # "close 1008", "refused 503", ...
    escaped: list[str] = field(default_factory=list)  # exceptions out of a connection: none
    failures: list[dict[str, Any]] = field(default_factory=list)  # the loop's: none
    taken: int = 0  # calls stored when the last hostile connection was done
    stored: int = 0  # calls stored once they had ended (or after 120 s): taken and later joins
    unended: int | None = None  # of those, not stored as ended within 120 s
    causes: Counter[str] = field(default_factory=Counter)  # their end causes
    served: list[dict[str, Any]] = field(default_factory=list)  # the good calls' exports
    good: int = 0  # good calls made after the hostile ones
    seconds: float = 0.0  # from the first hostile connection to the last good call stored

    def problems(self, *, min_calls: int, within_s: float = 240) -> list[str]:
        """The checks that failed: more than ``min_calls`` calls taken (counted once stored:
        the listener still works through the last connections' messages after the client is
        done, so a count taken then depends on timing), every one stored as ended, nothing
        escaped, every good call served, all within ``within_s``."""
        found = []
        if self.stored <= min_calls:
            found.append(f"{self.stored} calls taken (more than {min_calls} expected)")
        if self.unended != 0:
            found.append(f"{self.unended} calls not stored as ended within 120 s")
        if self.escaped:
            found.append(f"{len(self.escaped)} exceptions out of connections: {self.escaped[:3]}")
        if self.failures:
            found.append(f"{len(self.failures)} unhandled in the loop: {self.failures[:3]}")
        if len(self.served) < self.good:
            found.append(f"{self.good - len(self.served)} of {self.good} good calls not served")
        if self.seconds >= within_s:
            found.append(f"{self.seconds:.0f} s (under {within_s:.0f} s expected)")
        return found

    def assert_survived(self, *, min_calls: int, within_s: float = 240) -> None:
        problems = self.problems(min_calls=min_calls, within_s=within_s)
        assert not problems, problems

    def report(self) -> dict[str, Any]:
        """The run as JSON (benchmarks/fuzz_forks.py)."""
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "messages": self.messages,
            "connections": self.connections,
            "accepted": self.accepted,
            "outcomes": dict(self.outcomes.most_common()),
            "calls_taken": self.taken,
            "calls_stored": self.stored,
            "calls_stored_ended": None if self.unended is None else self.stored - self.unended,
            "end_causes": dict(self.causes.most_common()),
            "good_calls_served": f"{len(self.served)} of {self.good}",
            "exceptions_escaped": len(self.escaped) + len(self.failures),
            "escaped_examples": self.escaped[:5] + [str(f) for f in self.failures[:5]],
            "seconds": round(self.seconds, 1),
        }


async def _send_ws(url: str, hostile: Hostile, headers: dict[str, str] | None) -> str:
    """One hostile WebSocket connection: how it ended."""
    try:
        async with connect(url, additional_headers=headers) as ws:
            for message in hostile.messages:
                await ws.send(message)
            if hostile.ending == "drop":
                ws.transport.abort()
                return "dropped"
        return f"close {ws.close_code}"
    except InvalidStatus as refusal:
        return f"refused {refusal.response.status_code}"
    except ConnectionClosed as closed:  # closed by the bridge for what it sent
        return f"close {closed.rcvd.code if closed.rcvd else 1006}"
    except OSError:
        return "reset"


def _ws_target(base: str, hostile: Hostile) -> tuple[str, dict[str, str] | None]:
    """Where a hostile connection goes and its credentials (those of :data:`SETTINGS`)."""
    url, query = f"{base}{hostile.path}", hostile.query
    if hostile.path in ("/freeswitch", "/asterisk"):
        return f"{url}?token={SECRET}&{query}", None
    url += f"?{query}" if query else ""
    if hostile.path == "/jambonz":
        return url, basic_auth(*JAMBONZ_AUTH)
    if hostile.path == "/jambonz-stt":
        return url, {"Authorization": f"Bearer {JAMBONZ_SECRET}"}
    if hostile.path == "/twilio":
        return url, {"X-Twilio-Signature": twilio_peer(url).signature or ""}
    return url, audiohook_peer(base).headers()  # a new nonce each time


async def _send_audiosocket(
    port: int, conn: audiosocket_fuzz.Connection, rng: random.Random
) -> str:
    """One hostile AudioSocket connection, split at random byte boundaries: how it ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"".join(conn.chunks)
    outcome = conn.ending
    try:
        at = 0
        while at < len(data):
            step = rng.randrange(1, 700)
            writer.write(data[at : at + step])
            at += step
            await writer.drain()
        if conn.ending == "none":
            await asyncio.wait_for(reader.read(), 10)  # the server's idle timeout
            outcome = "idle: closed by the bridge"
    except (ConnectionError, OSError):
        outcome = "reset by the bridge"  # mid-stream: a refusal or a protocol error
    finally:
        writer.close()
    return outcome


WS_FUZZ: dict[str, Callable[[random.Random], Hostile]] = {
    "freeswitch": freeswitch_fuzz.connection,
    "jambonz": jambonz_fuzz.connection,
    "asterisk": asterisk_fuzz.connection,
    "twilio": twilio_fuzz.connection,
    "audiohook": audiohook_fuzz.connection,
}


def _good_calls(
    protocol: str, target: str | AudioSocketServer
) -> list[Callable[[], Awaitable[None]]]:
    """The good calls made after the hostile ones: one per path."""
    if isinstance(target, AudioSocketServer):
        port = target.port

        async def audiosocket_call() -> None:
            peer = AudioSocketPeer(port, uuid.uuid4())
            await peer.connect()
            await peer.stream(bytes(1600))
            await peer.hangup()

        return [audiosocket_call]
    base = target
    if protocol == "freeswitch":

        async def freeswitch_call() -> None:
            peer = FreeSwitchPeer(f"{base}/freeswitch?uuid=after", token=SECRET)
            await peer.connect("{}")
            await peer.stream(bytes(3200), frame_bytes=320)
            await peer.hangup()

        return [freeswitch_call]
    if protocol == "jambonz":

        async def listen_call() -> None:
            peer = JambonzListenPeer(f"{base}/jambonz", auth=JAMBONZ_AUTH)
            await peer.connect(JambonzListenPeer.call_info("after"))
            await peer.stream(bytes(3200), frame_bytes=320)
            await peer.hangup()

        async def stt_call() -> None:
            stt = JambonzSttPeer(f"{base}/jambonz-stt", api_key=JAMBONZ_SECRET)
            await stt.start()
            await stt.stream(bytes(3200))
            assert await stt.stop() == (1000, "stopped")

        return [listen_call, stt_call]
    if protocol == "asterisk":

        async def asterisk_call() -> None:
            peer = AsteriskWsPeer(f"{base}/asterisk?token={SECRET}&call=after", fmt="slin")
            await peer.connect()
            await peer.stream(bytes(3200))
            await peer.hangup()

        return [asterisk_call]
    if protocol == "twilio":

        async def twilio_call() -> None:
            good = twilio_peer(f"{base}/twilio", call_sid="CA-after")
            await good.connect()
            await good.stream({"inbound": b"\xff" * 3200})
            await good.stop()

        return [twilio_call]

    async def audiohook_call() -> None:
        good = audiohook_peer(base)
        await good.connect()
        await good.stream(bytes(1600 * 3))
        await good.close()

    return [audiohook_call]


async def fuzz(
    protocol: str,
    db: Path,
    endpoint: AsrEndpoint,
    *,
    seed: int,
    messages: int = 10_000,
    concurrency: int = 16,
    rejoin_s: float = 0.5,
    progress: Callable[[FuzzRun], None] | None = None,
    **settings: Any,
) -> FuzzRun:
    """``protocol``'s hostile connections (``tests/ingest/fuzz/``), ``concurrency`` at a time,
    against its listener in-process until ``messages`` are sent; then every call taken waited
    for until stored as ended, a good call per path, and the listener stopped.  Exceptions out
    of a connection and the event loop's unhandled ones are collected, not raised; the checks
    are :meth:`FuzzRun.problems`.  ``progress`` is called after each batch."""
    run = FuzzRun(protocol, seed)
    rng = random.Random(seed)
    keys = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(40)]  # AudioSocket's call keys
    # Left installed once the run is done: exceptions found as its tasks are collected count.
    asyncio.get_running_loop().set_exception_handler(lambda _, c: run.failures.append(c))
    async with _listening(protocol, db, endpoint, rejoin_s, settings) as (target, store):

        async def one() -> None:
            run.connections += 1
            if isinstance(target, AudioSocketServer):
                conn = audiosocket_fuzz.connection(rng, keys)
                run.messages += conn.frames
                outcome = await _send_audiosocket(target.port, conn, rng)
            else:
                hostile = WS_FUZZ[protocol](rng)
                run.messages += len(hostile.messages)
                url, headers = _ws_target(target, hostile)
                outcome = await _send_ws(url, hostile, headers)
            run.outcomes[outcome] += 1

        started = time.monotonic()
        while run.messages < messages and len(run.escaped) < 100:
            batch = await asyncio.gather(
                *(one() for _ in range(concurrency)), return_exceptions=True
            )
            run.escaped += [repr(e) for e in batch if isinstance(e, BaseException)]
            if progress is not None:
                progress(run)
        run.taken = len(await store.list_calls(limit=1_000_000))
        if isinstance(target, AudioSocketServer):
            run.accepted = target.connections
        await _after(run, protocol, target, store)
        run.seconds = time.monotonic() - started
    return run


@asynccontextmanager
async def _listening(
    protocol: str, db: Path, endpoint: AsrEndpoint, rejoin_s: float, settings: dict[str, Any]
) -> AsyncIterator[tuple[str | AudioSocketServer, TranscriptStore]]:
    if protocol == "audiosocket":
        async with audiosocket(db, endpoint, rejoin_s=rejoin_s, **settings) as (server, store):
            yield server, store
    else:
        async with fork_socket(db, endpoint, protocol, rejoin_s=rejoin_s, **settings) as found:
            yield found


async def _after(
    run: FuzzRun, protocol: str, target: str | AudioSocketServer, store: TranscriptStore
) -> None:
    """Every call taken stored as ended (within 120 s), then the good calls, each stored."""
    with contextlib.suppress(TimeoutError):
        await ended(store, 120, count=run.taken)
    records = await store.list_calls(limit=1_000_000)
    run.stored = len(records)
    run.unended = sum(1 for r in records if r.ended_at_ms is None)
    run.causes.update(str(r.end_cause) for r in records)
    if run.unended:
        return
    calls = _good_calls(protocol, target)
    run.good = len(calls)
    for i, call in enumerate(calls):
        try:
            await call()
            run.served.append(await ended(store, 60, count=run.stored + i + 1))
        except Exception as e:  # an AssertionError or a timeout: the run's problem
            run.escaped.append(f"good call {i + 1}: {e!r}")
            return
