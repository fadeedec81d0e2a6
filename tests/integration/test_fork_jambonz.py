"""jambonz into the bridge's media-fork WebSocket: the listen verb and the custom speech API.

The peers (tests/ingest/peers.py) speak as jambonz does: the listen verb's first text frame
with the call's attributes, binary L16, passDtmf text, Basic auth; the custom speech vendor's
Bearer key, start / LINEAR16 8 kHz / stop.  Speech is flite, sent in real time, transcribed by
the embedded engine; asserted in SQLite (legs, roles, words on time, metadata, end cause) and,
for the speech API, on the socket (the transcription messages jambonz gets back).
"""

from __future__ import annotations

import asyncio
import base64
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
from websockets.typing import Subprotocol

from bridge.asr.client import AsrEndpoint
from bridge.config.ingest import ForkSocketConfig
from bridge.export import to_json
from bridge.ingest.fork import ForkCalls
from bridge.ingest.websocket import ForkSocketServer, fork_protocols
from storage import TranscriptStore
from tests.engine import speech
from tests.ingest.peers import JambonzListenPeer, JambonzSttPeer, interleave, slin8k, slin16k

pytestmark = pytest.mark.integration
SECRET = "jambonz-api-key"
AUTH = ("jambonz", "listen-pass:word")


@asynccontextmanager
async def forks(
    db: Path, endpoint: AsrEndpoint, **config: Any
) -> AsyncIterator[tuple[str, TranscriptStore]]:
    store = await TranscriptStore.open(db)
    calls = ForkCalls(store, endpoint=endpoint, finish_timeout_s=20, rejoin_s=1.0)
    settings = ForkSocketConfig(
        enabled=True,
        port=0,
        **({"secret": SECRET, "jambonz_username": AUTH[0], "jambonz_password": AUTH[1]} | config),
    )
    server = ForkSocketServer(calls, settings, fork_protocols())
    await server.start()
    try:
        yield f"ws://127.0.0.1:{server.port}", store
    finally:
        await server.stop()
        await calls.close()
        await store.close()


async def test_listen_stereo_16k_is_two_legs_with_words_on_time_and_the_call_attributes(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    call_sid = str(uuid.uuid4())
    async with forks(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        peer = JambonzListenPeer(f"{base}/jambonz", auth=AUTH)
        await peer.connect(
            JambonzListenPeer.call_info(call_sid),
            sample_rate=16000,
            mix_type="stereo",
            metadata={"agent": "alice", "queue": "billing"},
        )
        assert peer.ws is not None and peer.ws.subprotocol == "audio.jambonz.org"
        pcm = interleave(slin16k(left.audio), slin16k(right.audio))
        await peer.stream(pcm[:128_000], frame_bytes=1280)  # 2 s, then a digit (passDtmf)
        await peer.dtmf("7")
        await peer.stream(pcm[128_000:], frame_bytes=1280)
        await peer.hangup()
        doc = await ended(store)
    assert doc["call"]["source"] == "jambonz" and doc["call"]["end_cause"] == "hangup"
    assert doc["call"]["title"] == "jambonz +15083084809 → +15083728363"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert {leg["codec"] for leg in legs.values()} == {"pcm16/16000"}
    assert_words_on_time(stored_words(doc, legs["caller"]["id"]), spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(stored_words(doc, legs["callee"]["id"]), spoken_starts(right), RIGHT_KEYS)
    (start,) = [e for e in doc["events"] if e["kind"] == "jambonz.start"]
    attributes = json.loads(start["detail"])
    assert attributes["callSid"] == call_sid and attributes["api"] == "listen"
    assert (attributes["sampleRate"], attributes["mixType"]) == (16000, "stereo")
    assert (attributes["agent"], attributes["from"]) == ("alice", "+15083084809")
    (dtmf,) = [e for e in doc["events"] if e["kind"] == "dtmf"]
    assert dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=7"
    assert abs(dtmf["at_ms"] - 2000) <= 300


def finals(received: list[dict[str, Any]]) -> str:
    text = [m["alternatives"][0]["transcript"] for m in received if m["is_final"]]
    return speech.normalize(" ".join(text))


async def test_custom_speech_start_stream_stop_sends_transcriptions_back_and_stores_the_leg(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """Two recognitions at once, as two gather verbs would: one asks for interim results, one
    does not; each ends with stop, gets its final text, and the bridge closes the socket."""
    said = speech.build([0.5, "Please call Alice tomorrow morning", 0.5], by_word=True)
    async with forks(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        url = f"{base}/jambonz-stt"
        interim = JambonzSttPeer(url, api_key=SECRET)
        plain = JambonzSttPeer(f"{url}?role=customer", api_key=SECRET)
        await interim.start(interim=True, options={"hints": ["Alice"]})
        await plain.start(language="en-GB")
        await asyncio.gather(interim.stream(slin8k(said.audio)), plain.stream(slin8k(said.audio)))
        closes = await asyncio.gather(interim.stop(), plain.stop())
        assert list(closes) == [(1000, "stopped"), (1000, "stopped")]
        await ended(store, count=2)
        docs = [await store.get_call(c.call_id) for c in await store.list_calls()]
    for peer in (interim, plain):
        assert {m["type"] for m in peer.received} == {"transcription"}, peer.received
        assert {"alice", "tomorrow", "morning"} <= set(finals(peer.received).split())
        assert all(m["channel"] == 1 and m["alternatives"] for m in peer.received)
    assert any(not m["is_final"] for m in interim.received), interim.received
    assert all(m["is_final"] for m in plain.received) and plain.received[0]["language"] == "en-GB"
    by_role: dict[str, dict[str, Any]] = {}
    for transcript in docs:
        assert transcript is not None
        doc = json.loads(to_json(transcript))
        assert doc["call"]["source"] == "jambonz" and doc["call"]["end_cause"] == "hangup"
        (leg,) = doc["legs"]
        assert leg["codec"] == "pcm16/8000"
        by_role[leg["role"]] = doc
    assert sorted(by_role) == ["caller", "customer"]
    for role, doc in by_role.items():
        leg_id = doc["legs"][0]["id"]
        assert_words_on_time(stored_words(doc, leg_id), spoken_starts(said), {"alice", "morning"})
        (start,) = [e for e in doc["events"] if e["kind"] == "jambonz.start"]
        metadata = json.loads(start["detail"])
        assert metadata["api"] == "custom-speech"
        assert metadata["interimResults"] is (role == "caller")


async def refused(url: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, **kwargs):
            pass
    return caught.value


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


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


async def test_refusals_basic_auth_401_and_errors_that_say_why(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    jambonz = [Subprotocol("audio.jambonz.org")]
    bearer = {"Authorization": f"Bearer {SECRET}"}
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
        listen = f"{base}/jambonz"
        none = await refused(listen, subprotocols=jambonz)
        assert none.response.status_code == 401
        assert none.response.headers["WWW-Authenticate"].startswith("Basic ")
        assert b"BRIDGE_JAMBONZ_USERNAME" in none.response.body
        wrong = await refused(listen, additional_headers=basic(AUTH[0], "guess"))
        assert wrong.response.status_code == 401
        assert (await refused(listen, additional_headers=bearer)).response.status_code == 401
        assert (await refused(f"{base}/jambonz-stt")).response.status_code == 401
        ok = basic(*AUTH)
        rate = await closed_after(listen, ['{"sampleRate": 11025}'], additional_headers=ok)
        assert rate[:2] == (
            1008,
            "audio at 11025 Hz: the bridge takes 8000, 16000, 24000, 32000, 44100, 48000 Hz",
        )
        audio_first = await closed_after(listen, [bytes(320)], additional_headers=ok)
        assert audio_first[0] == 1008 and "audio before the start" in str(audio_first[1])
        mix = await closed_after(listen, ['{"mixType": "quad"}'], additional_headers=ok)
        assert mix[:2] == (1008, "mixType='quad': expected mono, stereo or mixed")
        odd = await closed_after(listen, ['{"callSid": "odd"}', bytes(321)], additional_headers=ok)
        assert odd[0] == 1007 and "not whole 1-channel pcm16/8000 samples" in str(odd[1])
        doc = await ended(store)
        assert doc["call"]["end_cause"] == "protocol-error"

        stt = f"{base}/jambonz-stt"
        before = await closed_after(stt, [bytes(320)], additional_headers=bearer)
        assert before[:2] == (1008, "audio before the start message")
        assert json.loads(before[2][0]) == {
            "type": "error",
            "error": "audio before the start message",
        }
        start = '{"type":"start","language":"en-US","format":"raw","encoding":"LINEAR16"}'
        twice = await closed_after(
            stt, [start, bytes(320), '{"type":"pause"}', start], additional_headers=bearer
        )
        errors = [json.loads(m)["error"] for m in twice[2]]
        second = "a second start: one start per connection"
        assert errors == ["unknown message type 'pause'", second]
        assert twice[:2] == (1008, second)
        garbage = await closed_after(stt, [start, "stop"], additional_headers=bearer)
        assert garbage[0] == 1008 and "not JSON" in json.loads(garbage[2][-1])["error"]
        doc = await ended(store, count=3)
        assert doc["call"]["end_cause"] == "protocol-error"
    async with forks(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)) as (base, _):
        full = await refused(f"{base}/jambonz-stt", additional_headers=bearer)
        assert full.response.status_code == 503 and full.response.headers["Retry-After"] == "5"


def hostile_listen(rng: random.Random) -> list[str | bytes]:
    first = rng.choice(
        [
            json.dumps({"callSid": f"k{rng.randrange(20)}", "sampleRate": 8000}),
            json.dumps({"callSid": f"k{rng.randrange(20)}", "mixType": "stereo"}),
            json.dumps({"mixType": "mixed", "sampleRate": rng.choice([16000, 24000, 64000])}),
            json.dumps({"sampleRate": rng.choice([7, 11025, "x", None])}),
            '{"mixType": "quad"}',
            "{",
            "[]",
            "x" * 70_000,
        ]
    )
    messages: list[str | bytes] = [] if rng.random() < 0.05 else [first]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.75:
            messages.append(rng.randbytes(rng.choice([320, 640, 1280, 0, 1, 3, 321, 2000])))
        elif kind < 0.85:
            messages.append(rng.choice(['{"event":"dtmf","dtmf":"5"}', '{"event":"dtmf"}', "{"]))
        elif kind < 0.88:
            messages.append(bytes(300_000))  # over max_message_bytes: closed with 1009
        else:
            messages.append(first)
    return messages


def hostile_stt(rng: random.Random) -> list[str | bytes]:
    start: dict[str, object] = {"type": "start", "format": "raw", "encoding": "LINEAR16"}
    start |= rng.choice(
        [{}, {"interimResults": True}, {"callSid": f"s{rng.randrange(10)}"}, {"sampleRateHz": 3}]
    )
    messages: list[str | bytes] = [] if rng.random() < 0.05 else [json.dumps(start)]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.75:
            messages.append(rng.randbytes(rng.choice([320, 640, 0, 1, 321])))
        elif kind < 0.9:
            messages.append(rng.choice(['{"type":"pause"}', "{", "[1]", '{"type":"start"}']))
        else:
            messages.append('{"type":"stop"}')
    return messages


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The jambonz fuzzer: 10,000+ messages over hundreds of connections on both paths, 16 at
    a time: broken or missing start frames, rates and mixes the bridge does not take, odd byte
    counts, messages over the limit, reused callSids, second starts, stops mid-stream, drops
    without a close.  Nothing escapes a connection, every call taken ends stored, and good
    streams afterwards are served."""
    rng = random.Random(7)
    failures: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: failures.append(c))
    sent = 0
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server, max_legs=6), rejoin_s=0.5) as (
        base,
        store,
    ):

        async def one() -> int:
            listen = rng.random() < 0.5
            messages = hostile_listen(rng) if listen else hostile_stt(rng)
            url = f"{base}/jambonz" if listen else f"{base}/jambonz-stt"
            headers = basic(*AUTH) if listen else {"Authorization": f"Bearer {SECRET}"}
            try:
                async with connect(url, additional_headers=headers) as ws:
                    for message in messages:
                        await ws.send(message)
                    if rng.random() < 0.5:
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
        peer = JambonzListenPeer(f"{base}/jambonz", auth=AUTH)
        await peer.connect(JambonzListenPeer.call_info("after"))
        await peer.stream(bytes(3200), frame_bytes=320)
        await peer.hangup()
        doc = await ended(store, 60, count=len(taken) + 1)
        assert doc["call"]["end_cause"] == "hangup" and doc["call"]["source"] == "jambonz"
        stt = JambonzSttPeer(f"{base}/jambonz-stt", api_key=SECRET)
        await stt.start()
        await stt.stream(bytes(3200))
        assert await stt.stop() == (1000, "stopped")
        await ended(store, 60, count=len(taken) + 2)
        assert time.monotonic() - started < 240
    assert not failures, failures[:3]
