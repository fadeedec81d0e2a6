"""FreeSWITCH mod_audio_stream / mod_audio_fork into the bridge's media-fork WebSocket.

The peer (tests/ingest/peers.py) streams as the modules do: deflate, a first text message with
the metadata, binary L16 every 20 ms, a normal close at hangup.  Speech is flite, sent in real
time, transcribed by the embedded engine; asserted in SQLite (legs, roles, words on time,
metadata, end cause) and on the socket (the transcription messages FreeSWITCH gets back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_server import EngineServer
from test_embedded_engine import (
    LEFT,
    LEFT_KEYS,
    RIGHT,
    RIGHT_KEYS,
    assert_words_on_time,
    spoken_starts,
    stored_words,
)
from test_fork_audiosocket import ended, endpoint_of
from vllm_server import VllmServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.asr.client import AsrEndpoint
from bridge.config.ingest import ForkSocketConfig
from bridge.ingest.fork import ForkCalls
from bridge.ingest.websocket import ForkSocketServer, fork_protocols
from storage import TranscriptStore
from tests.engine import speech
from tests.ingest.peers import FreeSwitchPeer, interleave, slin8k, slin16k

pytestmark = pytest.mark.integration
SECRET = "fork-test-secret"


@asynccontextmanager
async def forks(
    db: Path, endpoint: AsrEndpoint, **config: Any
) -> AsyncIterator[tuple[str, TranscriptStore]]:
    store = await TranscriptStore.open(db)
    calls = ForkCalls(store, endpoint=endpoint, finish_timeout_s=20, rejoin_s=1.0)
    settings = ForkSocketConfig(enabled=True, port=0, **({"secret": SECRET} | config))
    server = ForkSocketServer(calls, settings, fork_protocols())
    await server.start()
    try:
        yield f"ws://127.0.0.1:{server.port}", store
    finally:
        await server.stop()
        await calls.close()
        await store.close()


def finals_by_role(received: list[dict[str, Any]]) -> dict[str, str]:
    text: dict[str, str] = {}
    for message in received:
        assert message["type"] == "transcription"
        data = message["data"]
        if data["final"]:
            text[data["role"]] = text.get(data["role"], "") + " " + data["text"]
    return {role: speech.normalize(t) for role, t in text.items()}


async def test_stereo_16k_is_two_legs_with_words_on_time_and_text_sent_back(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    channel = str(uuid.uuid4())
    async with forks(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        peer = FreeSwitchPeer(f"{base}/freeswitch?uuid={channel}&mix=stereo&rate=16k", token=SECRET)
        await peer.connect(json.dumps({"caller_id_number": "+4930123", "agent": "alice"}))
        await peer.stream(interleave(slin16k(left.audio), slin16k(right.audio)), frame_bytes=1280)
        await asyncio.sleep(1.0)  # the last steps' text comes back before the hangup
        await peer.hangup()
        doc = await ended(store)
    assert doc["call"]["source"] == "freeswitch" and doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert {leg["codec"] for leg in legs.values()} == {"pcm16/16000"}
    assert_words_on_time(stored_words(doc, legs["caller"]["id"]), spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(stored_words(doc, legs["callee"]["id"]), spoken_starts(right), RIGHT_KEYS)
    (start,) = [e for e in doc["events"] if e["kind"] == "freeswitch.start"]
    metadata = json.loads(start["detail"])
    assert metadata["uuid"] == channel and metadata["caller_id_number"] == "+4930123"
    back = finals_by_role(peer.received)
    assert "alice" in back["caller"] and "invoice" in back["callee"], back


async def test_mod_audio_fork_mono_8k_keeps_times_across_a_pause(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """mod_audio_fork's subprotocol is chosen; the stream pauses 2 s (``uuid_audio_stream
    pause``: nothing is sent) and resumes: the words after the pause keep their times."""
    before = speech.build([0.5, "Please call Alice", 0.5], by_word=True)
    after = speech.build([0.3, "tomorrow morning", 1.0], by_word=True)
    async with forks(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        peer = FreeSwitchPeer(
            f"{base}/freeswitch?mix=mono&rate=8k&token={SECRET}", subprotocol="audio.drachtio.org"
        )
        await peer.connect("plain text metadata")
        assert peer.ws is not None and peer.ws.subprotocol == "audio.drachtio.org"
        started = time.monotonic()
        await peer.stream(slin8k(before.audio), frame_bytes=320)
        await asyncio.sleep(2.0)
        resumed_ms = (time.monotonic() - started) * 1000
        await peer.stream(slin8k(after.audio), frame_bytes=320)
        await peer.hangup()
        doc = await ended(store)
    (leg,) = doc["legs"]
    assert leg["role"] == "caller" and leg["codec"] == "pcm16/8000"
    spoken = spoken_starts(before) | {k: v + resumed_ms for k, v in spoken_starts(after).items()}
    assert_words_on_time(stored_words(doc, leg["id"]), spoken, {"alice", "tomorrow", "morning"})
    (start,) = [e for e in doc["events"] if e["kind"] == "freeswitch.start"]
    assert json.loads(start["detail"])["text"] == "plain text metadata"


async def refused(url: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, **kwargs):
            pass
    return caught.value


async def closed_after(url: str, messages: list[str | bytes]) -> tuple[int | None, str | None]:
    """Send ``messages``, then the close code and reason the bridge closed with."""
    ws = await connect(url)
    with contextlib.suppress(ConnectionClosed):  # it may close before all were sent
        for message in messages:
            await ws.send(message)
        await ws.recv()
    assert ws.close_code is not None, "the bridge kept the connection open"
    return ws.close_code, ws.close_reason


async def test_refusals_are_statuses_and_close_codes_that_say_why(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
        no_token = await refused(f"{base}/freeswitch")
        assert no_token.response.status_code == 401
        assert b"BRIDGE_FORKS_SECRET" in no_token.response.body
        wrong = await refused(f"{base}/nosuch?token={SECRET}")
        assert wrong.response.status_code == 404 and b"/freeswitch" in wrong.response.body
        bad_url = await closed_after(f"{base}/freeswitch?token={SECRET}&mix=quad", ["{}"])
        assert bad_url == (1008, "mix='quad': expected mono, mixed or stereo")
        odd = await closed_after(f"{base}/freeswitch?token={SECRET}&uuid=odd", ["{}", bytes(321)])
        assert odd[0] == 1007 and "not whole 1-channel pcm16/8000 samples" in odd[1]
        doc = await ended(store)
        assert doc["call"]["end_cause"] == "protocol-error"
    async with forks(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)) as (base, _):
        full = await refused(f"{base}/freeswitch?token={SECRET}")
        assert full.response.status_code == 503 and full.response.headers["Retry-After"] == "5"


def hostile_messages(rng: random.Random) -> tuple[str, list[str | bytes], str]:
    """One connection's URL query, messages and ending (close | drop)."""
    query = rng.choice(
        [
            "",
            "mix=stereo&rate=16k",
            "mix=mixed",
            "rate=48000",
            "rate=12345",
            "mix=quad",
            "rate=²",
            "uuid=" + "x" * 300,
            f"uuid=k{rng.randrange(20)}",
            "roles=agent,customer",
        ]
    )
    messages: list[str | bytes] = []
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            messages.append(rng.randbytes(rng.choice([320, 640, 1280, 0, 1, 3, 321, 2000])))
        elif kind < 0.85:
            messages.append(rng.choice(['{"uuid": 5}', "{", "[]", "\x00", "x" * 5000, "pause"]))
        elif kind < 0.9:
            messages.append(bytes(300_000))  # over max_message_bytes: closed with 1009
        else:
            messages.append(f'{{"uuid": "k{rng.randrange(20)}"}}')
    return query, messages, rng.choice(["close", "drop"])


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The FreeSWITCH fuzzer: 10,000+ messages over hundreds of connections, 16 at a time:
    bad URLs, missing or broken metadata, odd byte counts, messages over the limit, reused
    call uuids, drops without a close.  Nothing escapes a connection, every call taken ends
    stored, and a good stream afterwards is served."""
    rng = random.Random(15)
    failures: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: failures.append(c))
    sent = 0
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server, max_legs=6), rejoin_s=0.5) as (
        base,
        store,
    ):

        async def one() -> int:
            query, messages, ending = hostile_messages(rng)
            try:
                async with connect(f"{base}/freeswitch?token={SECRET}&{query}") as ws:
                    for message in messages:
                        await ws.send(message)
                    if ending == "drop":
                        ws.transport.abort()
            except (ConnectionClosed, InvalidStatus, OSError):
                pass  # refused (busy) or closed by the bridge for what it sent
            return len(messages)

        started = time.monotonic()
        while sent < 10_000:
            sent += sum(await asyncio.gather(*(one() for _ in range(16))))
        taken = await store.list_calls(limit=1000)
        assert len(taken) > 30, len(taken)
        await ended(store, 120, count=len(taken))
        peer = FreeSwitchPeer(f"{base}/freeswitch?uuid=after", token=SECRET)
        await peer.connect("{}")
        await peer.stream(bytes(3200), frame_bytes=320)
        await peer.hangup()
        doc = await ended(store, 60, count=len(taken) + 1)
        assert doc["call"]["end_cause"] == "hangup"
        assert time.monotonic() - started < 240
    assert not failures, failures[:3]
