"""The ASR client's reconnect, backoff, stall and give-up paths, in seconds, against an in-process
realtime server.

The server (:class:`FakeRealtime`) speaks vLLM's ``/v1/realtime`` through the embedded engine's
own sans-I/O server side (``bridge.engine.protocol``: session.created, session.update, commit /
append / final commit, one ``transcription.delta`` per 80 ms step, ``transcription.done``,
vllm-realtime.md §1.5 and §2.4) and breaks on demand: it drops a connection after some steps,
stays mute, refuses the handshake with an HTTP status, or stops a generation at
``max_model_len``.  Every 80 ms chunk of the test audio holds its own 1-based number in every
sample, and step ``k``'s delta names the chunk of frame ``k`` (``" 7"``), so the steps the
client reports say which audio was heard, and where on the leg clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from bridge.asr.client import AsrClient, AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.core.asr_protocol import (
    AsrEvent,
    AsrState,
    AsrStream,
    AudioDropped,
    Closed,
    GenerationEnded,
    SessionStarted,
    StepText,
)
from bridge.core.step_clock import StepClock
from bridge.core.types import CHUNK_SAMPLES
from bridge.engine.protocol import (
    AudioReceived,
    GenerationStarted,
    RealtimeServerProtocol,
    SendFrame,
)
from bridge.errors import AsrConnectionError
from bridge.files.reader import open_audio
from bridge.leg import LegSettings
from bridge.transcribe import transcribe_file
from storage import TranscriptStore

MODEL = "voxtral-test"
PROMPT_TOKENS = StepClock().prompt_tokens  # 39 at the default 480 ms delay
CHUNK_BYTES = CHUNK_SAMPLES * 2
E = TypeVar("E", bound=AsrEvent)


def chunk(number: int) -> bytes:
    """80 ms of PCM16 whose every sample is ``number`` (1-based: 0 is the right pad's silence)."""
    return number.to_bytes(2, "little", signed=True) * CHUNK_SAMPLES


def heard(number: int) -> tuple[str, int]:
    """The step text and leg-clock start the client must report for chunk ``number``."""
    return f" {number}", (number - 1) * CHUNK_SAMPLES


# -- the server ---------------------------------------------------------------------------------


@dataclass
class Session:
    """What one connection's server side received: each generation's audio."""

    generations: list[bytearray] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(audio) for audio in self.generations) // 2

    @property
    def chunks(self) -> list[int]:
        """The number in each 80 ms frame received, generation after generation."""
        return [
            int.from_bytes(audio[i : i + 2], "little", signed=True)
            for audio in self.generations
            for i in range(0, len(audio), CHUNK_BYTES)
        ]


class FakeRealtime:
    """vLLM's ``/v1/realtime`` played by ``RealtimeServerProtocol``, with faults on demand.

    Args:
        refuse: HTTP statuses for the first handshakes, in order (then accepted).
        mute: connections (0-based) that take everything and send nothing after
            ``session.created`` (a stuck recognizer); ``None``: every connection.
        drop_after_steps: connection -> drop it (no close frame) once it sent this many deltas.
        max_model_len: as vLLM's ``--max-model-len``: a generation stops by itself after
            ``max_model_len - 39`` steps with an unsolicited ``transcription.done``.
    """

    def __init__(
        self,
        *,
        refuse: tuple[int, ...] = (),
        mute: Collection[int] | None = (),
        drop_after_steps: dict[int, int] | None = None,
        max_model_len: int = 131_072,
    ) -> None:
        self._refuse = list(refuse)
        self._mute = mute
        self._drop_after_steps = drop_after_steps or {}
        self.max_model_len = max_model_len
        self.handshakes = 0
        self.sessions: list[Session] = []

    @property
    def connections(self) -> int:
        return len(self.sessions)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self._refuse:
            return connection.respond(self._refuse.pop(0), "refused\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        index = len(self.sessions)
        session = Session()
        self.sessions.append(session)
        mute = self._mute is None or index in self._mute
        drop_after = self._drop_after_steps.get(index)
        protocol = RealtimeServerProtocol(model_names=[MODEL], max_model_len=self.max_model_len)
        await ws.send(protocol.connection_made(f"sess-{index}", 0).text)
        async for message in ws:
            assert isinstance(message, str), "the client sends text frames only"
            for event in protocol.receive_text(message):
                if isinstance(event, SendFrame):
                    if not mute:
                        await ws.send(event.text)
                elif isinstance(event, GenerationStarted):
                    session.generations.append(bytearray())
                elif isinstance(event, AudioReceived):
                    session.generations[-1] += event.pcm16
            if mute:
                continue
            while protocol.steps_ready > 0:  # step k: the text of frame k of the generation
                at = protocol.steps_sent * CHUNK_BYTES
                frame = session.generations[-1][at : at + 2]
                number = int.from_bytes(frame, "little", signed=True) if frame else 0
                await ws.send(protocol.send_delta(f" {number}" if number else "").text)
                if protocol.steps_sent == drop_after:
                    ws.transport.abort()  # a crash: no close frame, no done
                    return
            if protocol.generation_complete:
                await ws.send(protocol.send_done().text)


@contextlib.asynccontextmanager
async def listening(server: FakeRealtime) -> AsyncIterator[str]:
    async with serve(
        server.handle, "127.0.0.1", 0, process_request=server.process_request
    ) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/realtime"


# -- the client's side --------------------------------------------------------------------------


class Events:
    """The client's ``on_event``: keeps every event; a test can wait for one."""

    def __init__(self) -> None:
        self.all: list[AsrEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: AsrEvent) -> None:
        self.all.append(event)
        self._changed.set()

    async def wait_for(self, match: Callable[[AsrEvent], bool]) -> AsrEvent:
        while True:
            for event in self.all:
                if match(event):
                    return event
            self._changed.clear()
            await self._changed.wait()

    def heard(self) -> list[tuple[str, int]]:
        """(text, leg-clock start) of every step that carried text, in order."""
        return [(e.text, e.frame_start) for e in self.all if isinstance(e, StepText) and e.text]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.all if isinstance(e, kind)]


class Delays:
    """The client's backoff delays: yields ``values`` and records the ones the client used.

    ``now`` is a clock that moves only by the delays used (the client's ``clock``), so "down
    for longer than ``give_up_after_s``" is exact whatever the machine's load.
    """

    def __init__(self, *values: float) -> None:
        self._values = iter(values)
        self.used: list[float] = []
        self.now = 0.0

    def __iter__(self) -> Delays:
        return self

    def __next__(self) -> float:
        delay = next(self._values)
        self.used.append(delay)
        self.now += delay
        return delay


def client_for(
    url: str, events: Events, delays: Delays, **endpoint: Any
) -> tuple[AsrStream, AsrClient]:
    stream = AsrStream(MODEL)
    client = AsrClient(
        stream,
        AsrEndpoint(url=url, model=MODEL, **endpoint),
        events,
        delays=delays,
        clock=lambda: delays.now,
    )
    return stream, client


def feed(client: AsrClient, numbers: range) -> None:
    for number in numbers:
        client.send_audio(chunk(number))


# -- reconnects ---------------------------------------------------------------------------------


async def test_a_connection_dropped_mid_generation_resumes_at_the_first_frame_without_a_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Connection 0 dies after 8 steps: frames 1-8 are heard, the rest of what it took is lost.
    server = FakeRealtime(drop_after_steps={0: 8})
    events, delays = Events(), Delays(0.01, 0.01, 0.01)
    async with listening(server) as url:
        stream, client = client_for(url, events, delays)
        feed(client, range(1, 21))  # 1.6 s, buffered until the client connects
        runner = asyncio.create_task(client.run())
        async with asyncio.timeout(5):
            lost = await events.wait_for(lambda e: isinstance(e, GenerationEnded))
            feed(client, range(21, 41))  # the call goes on while the client reconnects
            client.end()
            await runner

    # The lost generation accounts for the 8 frames it stepped, not for what it took.
    assert lost == GenerationEnded(
        generation=1,
        start=0,
        samples=8 * CHUNK_SAMPLES,
        steps=8,
        text="".join(heard(n)[0] for n in range(1, 9)),
        completion_tokens=None,
        solicited=False,
    )
    # The server: connection 0 took frames 1-15 (step 8 needs 9000 + 7 x 1280 samples) and
    # died; connection 1 got the audio again from frame 9, the first without a step.
    first, second = server.sessions
    assert first.chunks == list(range(1, 16))
    assert second.chunks == list(range(9, 41))
    assert first.samples + second.samples == (40 + 7) * CHUNK_SAMPLES  # 7 frames sent twice
    # Nothing lost, nothing twice: every chunk heard once, at its place on the leg clock.
    assert events.heard() == [heard(n) for n in range(1, 41)]
    assert [e.solicited for e in events.of(GenerationEnded)] == [False, True]
    assert [e.session_id for e in events.of(SessionStarted)] == ["sess-0", "sess-1"]
    assert client.reconnects == 1 and client.failure is None
    assert delays.used == []  # the connection had stepped audio: reconnect at once
    assert stream.state is AsrState.CLOSED and stream.samples_unacknowledged == 0
    assert not events.of(AudioDropped)
    assert any("ASR connection lost (closed by the server" in r.message for r in caplog.records)


async def test_an_unsolicited_done_at_max_model_len_continues_on_a_new_session() -> None:
    # Each generation stops by itself after 24 steps (vllm-realtime.md §1.5 item 7).
    server = FakeRealtime(max_model_len=PROMPT_TOKENS + 24)
    events, delays = Events(), Delays(0.01)
    async with listening(server) as url:
        stream, client = client_for(url, events, delays)
        feed(client, range(1, 33))  # step 24 needs 9000 + 23 x 1280 samples: 31 chunks
        runner = asyncio.create_task(client.run())
        async with asyncio.timeout(5):
            capped = await events.wait_for(lambda e: isinstance(e, GenerationEnded))
            feed(client, range(33, 37))
            client.end()
            await runner

    assert isinstance(capped, GenerationEnded)
    assert (capped.steps, capped.samples, capped.solicited) == (24, 24 * CHUNK_SAMPLES, False)
    assert capped.completion_tokens == 24  # the server's own done, not a lost connection
    # The client replaced the socket (re-committing on it is not exact) and replayed from
    # frame 25; the new generation (12 chunks, 22 steps) ended normally.
    first, second = server.sessions
    assert first.chunks == list(range(1, 32))  # chunk 32 came after done: queued, unused
    assert second.chunks == list(range(25, 37))
    assert events.heard() == [heard(n) for n in range(1, 37)]
    ended = events.of(GenerationEnded)
    assert [(e.start, e.solicited) for e in ended] == [
        (0, False),
        (24 * CHUNK_SAMPLES, True),
    ]
    assert client.reconnects == 1 and client.failure is None
    assert delays.used == []
    assert stream.state is AsrState.CLOSED


# -- stalls -------------------------------------------------------------------------------------


async def test_a_stalled_connection_is_replaced_and_its_audio_replayed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Connection 0 takes the audio and never steps (a stuck recognizer); connection 1 works.
    server = FakeRealtime(mute={0})
    events, delays = Events(), Delays(0.05, 0.05, 0.05)
    async with listening(server) as url:
        stream, client = client_for(url, events, delays, stall_timeout_s=0.3)
        feed(client, range(1, 21))
        client.end()
        async with asyncio.timeout(5):
            await client.run()

    first, second = server.sessions
    assert first.chunks == list(range(1, 21))  # taken, never stepped
    assert second.chunks == list(range(1, 21))  # so all of it again
    assert events.heard() == [heard(n) for n in range(1, 21)]
    assert client.reconnects == 1 and client.failure is None
    assert delays.used == [0.05]  # no step on the stalled connection: back off before the next
    assert stream.state is AsrState.CLOSED
    assert any("connection lost (no event for 0.3 s)" in r.message for r in caplog.records)


@pytest.fixture
async def mute() -> AsyncIterator[tuple[FakeRealtime, str]]:
    server = FakeRealtime(mute=None)
    async with listening(server) as url:
        yield server, url


async def test_a_server_that_never_steps_is_given_up_after_three_stalls(
    mute: tuple[FakeRealtime, str],
) -> None:
    """Issue 13 §1: it gives up after ``max_stalled_connections`` stalls instead of
    reconnecting forever."""
    server, url = mute
    endpoint = AsrEndpoint(url=url, model="m", stall_timeout_s=0.3, max_stalled_connections=3)
    stream = AsrStream("m")
    events = []
    client = AsrClient(stream, endpoint, events.append, delays=iter([0.01] * 100))
    stream.send_audio(bytes(2560 * 20))  # 1.6 s of silence: a step is owed
    async with asyncio.timeout(10):  # reconnecting forever would time out here
        await client.run()
    assert server.connections == 3
    assert stream.state is AsrState.CLOSED
    assert client.failure is not None
    assert "no text step on 3 connections in a row" in client.failure
    assert "bridge check" in client.failure
    assert not any(isinstance(e, StepText) for e in events)


async def test_a_file_whose_server_never_steps_ends_asr_failed_with_its_leg_stored(
    mute: tuple[FakeRealtime, str], tmp_path: Path
) -> None:
    """Issue 13 §1 end to end: ``transcribe_file`` (``bridge transcribe``, uploads) on a server
    that takes audio and never steps: the client gives up after 3 stalls, the call ends
    ``asr-failed`` with its leg closed and the untranscribed audio a gap, and the caller gets
    ``AsrConnectionError`` (the command exits 1)."""
    _, url = mute
    wav = tmp_path / "call.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000 * 3))
    endpoint = AsrEndpoint(url=url, model="m", stall_timeout_s=0.3, max_stalled_connections=3)
    store = await TranscriptStore.open(tmp_path / "t.db")
    try:
        with pytest.raises(AsrConnectionError, match="what was transcribed before is stored"):
            async with asyncio.timeout(30):  # reconnecting forever would time out here
                await transcribe_file(
                    open_audio(wav), endpoint=endpoint, store=store, settings=LegSettings(),
                    fast=True,
                )  # fmt: skip
        (call,) = await store.list_calls()
        transcript = await store.get_call(call.call_id)
    finally:
        await store.close()
    assert transcript is not None
    assert call.end_cause == "asr-failed" and call.ended_at_ms is not None
    (leg,) = transcript.legs
    assert leg.ended_at_ms is not None and leg.duration_ms == 3000
    assert transcript.gaps and all("no text step" in g.reason for g in transcript.gaps)
    assert sum(g.duration_ms for g in transcript.gaps) == 3000


# -- failed connects ----------------------------------------------------------------------------


async def test_failed_connects_back_off_with_the_given_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Three handshakes answered 503 (a server starting up), then the fourth goes through.
    server = FakeRealtime(refuse=(503, 503, 503))
    events, delays = Events(), Delays(0.01, 0.02, 0.04, 0.08)
    async with listening(server) as url:
        stream, client = client_for(url, events, delays)
        feed(client, range(1, 11))
        client.end()
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await client.run()
        waited = asyncio.get_running_loop().time() - started

    assert server.handshakes == 4 and server.connections == 1
    assert delays.used == [0.01, 0.02, 0.04]
    assert waited >= 0.07  # it slept them, between the attempts
    retries = [r.message for r in caplog.records if "retrying in" in r.message]
    assert retries == [
        f"ASR {url} answered the WebSocket handshake with HTTP 503; retrying in {d:.2g} s"
        for d in (0.01, 0.02, 0.04)
    ]
    assert events.heard() == [heard(n) for n in range(1, 11)]  # nothing lost while down
    assert client.failure is None and stream.state is AsrState.CLOSED


async def test_a_server_down_longer_than_give_up_after_s_is_given_up() -> None:
    async with listening(FakeRealtime()) as url:
        pass  # the port is free again: every connect is refused
    events, delays = Events(), Delays(0.01, 0.02, 0.04, 0.08, 0.16)
    stream, client = client_for(url, events, delays, give_up_after_s=0.1)
    feed(client, range(1, 6))
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        await client.run()

    # Down at 0, 0.01, 0.03 and 0.07 s: retried; at 0.15 s past the 0.1 s limit: given up.
    assert delays.used == [0.01, 0.02, 0.04, 0.08]
    assert asyncio.get_running_loop().time() - started >= 0.15
    assert client.failure == (
        f"cannot connect to {url}: connection refused (is the ASR server running?)"
    )
    assert stream.state is AsrState.CLOSED
    assert events.of(AudioDropped) == [AudioDropped(0, 5 * CHUNK_SAMPLES, client.failure)]
    assert events.of(Closed) == [Closed(client.failure)]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "refused the API key (HTTP 401): pass --api-key or set BRIDGE_ASR_API_KEY"),
        (404, "has no realtime endpoint (HTTP 404)"),
    ],
)
async def test_a_refused_handshake_gives_up_at_once(status: int, message: str) -> None:
    server = FakeRealtime(refuse=(status,) * 5)
    events, delays = Events(), Delays(0.01, 0.01, 0.01)
    async with listening(server) as url:
        stream, client = client_for(url, events, delays)
        feed(client, range(1, 6))
        async with asyncio.timeout(2):  # retrying would take the delays, then time out
            await client.run()

    assert server.handshakes == 1 and server.connections == 0
    assert delays.used == []
    assert client.failure is not None
    assert client.failure.startswith(url) and message in client.failure
    assert "\n" not in client.failure  # one line, the cause and the fix
    assert stream.state is AsrState.CLOSED
    assert events.of(Closed) == [Closed(client.failure)]
    # Nothing was transcribed: all of it is reported as a gap, none silently lost.
    assert events.of(AudioDropped) == [AudioDropped(0, 5 * CHUNK_SAMPLES, client.failure)]


# -- a pool of servers --------------------------------------------------------------------------


def pool_client(urls: list[str], events: Events, delays: Delays) -> tuple[AsrStream, AsrClient]:
    pool = AsrPool([AsrEndpoint(url=u, model=MODEL, max_legs=4) for u in urls], ["a", "b"])
    stream = AsrStream(MODEL)
    return stream, AsrClient(stream, pool, events, delays=delays, clock=lambda: delays.now)


async def test_a_crashed_server_hands_the_leg_to_the_other_at_once() -> None:
    a, b = FakeRealtime(drop_after_steps={0: 8}), FakeRealtime()
    events, delays = Events(), Delays(5.0)
    async with listening(a) as url_a, listening(b) as url_b:
        stream, client = pool_client([url_a, url_b], events, delays)
        feed(client, range(1, 21))
        runner = asyncio.create_task(client.run())
        async with asyncio.timeout(5):
            await events.wait_for(lambda e: isinstance(e, GenerationEnded))
            feed(client, range(21, 41))
            client.end()
            await runner
    pool = client.pool
    assert [x.name for x in pool.backends] == ["a", "b"] and client.backend is pool.backends[1]
    assert a.sessions[0].chunks == list(range(1, 16))
    assert b.sessions[0].chunks == list(range(9, 41))  # replayed from the first frame without text
    assert events.heard() == [heard(n) for n in range(1, 41)]  # nothing lost, nothing twice
    assert delays.used == [] and client.failovers == 1  # moved at once, no backoff
    assert client.replayed_samples == 12 * CHUNK_SAMPLES  # 9-20 had gone to a, without text
    assert not pool.backends[0].healthy and "closed by the server" in (
        pool.backends[0].problem or ""
    )
    assert [x.legs for x in pool.backends] == [0, 0]  # released when the leg ended


async def test_a_server_that_breaks_the_protocol_is_marked_with_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def garbage(ws: ServerConnection) -> None:
        await ws.send('{"type": "session.created", "id": "x"}')
        await ws.recv()  # session.update
        await ws.send("<html>proxy error</html>")
        await ws.wait_closed()

    b = FakeRealtime()
    events, delays = Events(), Delays(5.0)
    async with serve(garbage, "127.0.0.1", 0) as bad, listening(b) as url_b:
        url_a = f"ws://127.0.0.1:{next(iter(bad.sockets)).getsockname()[1]}/v1/realtime"
        stream, client = pool_client([url_a, url_b], events, delays)
        feed(client, range(1, 11))
        runner = asyncio.create_task(client.run())
        await asyncio.sleep(0)
        client.end()
        async with asyncio.timeout(5):
            await runner
    a_backend = client.pool.backends[0]
    assert not a_backend.healthy
    assert a_backend.problem == "server sent invalid JSON: '<html>proxy error</html>'"
    assert events.heard() == [heard(n) for n in range(1, 11)] and client.failure is None
    assert any(
        "ASR backend a is unhealthy: server sent invalid JSON" in r.message for r in caplog.records
    )


async def test_a_refusal_by_one_server_is_not_the_end_of_the_leg() -> None:
    """401 from one server gives up a lone server's leg; in a pool the leg tries the other."""
    a, b = FakeRealtime(refuse=(401,)), FakeRealtime()
    events, delays = Events(), Delays(5.0)
    async with listening(a) as url_a, listening(b) as url_b:
        stream, client = pool_client([url_a, url_b], events, delays)
        feed(client, range(1, 6))
        client.end()
        async with asyncio.timeout(5):
            await client.run()
    assert client.failure is None and delays.used == []
    assert events.heard() == [heard(n) for n in range(1, 6)]
    assert "refused the API key (HTTP 401)" in (client.pool.backends[0].problem or "")
