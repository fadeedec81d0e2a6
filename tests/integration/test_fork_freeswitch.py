"""FreeSWITCH mod_audio_stream / mod_audio_fork into the bridge's media-fork WebSocket.

The peer (tests/ingest/peers/freeswitch.py) streams as the modules do: deflate, a first text
message with the metadata, binary L16 every 20 ms, a normal close at hangup.  Speech is flite,
sent in real time, transcribed by the embedded engine; asserted in SQLite (legs, roles, words on
time, metadata, end cause) and on the socket (the transcription messages FreeSWITCH gets back).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from engine_server import EngineServer
from forks import SECRET, closed_after, ended, endpoint_of, fork_socket, fuzz, refused
from test_embedded_engine import (
    LEFT,
    LEFT_KEYS,
    RIGHT,
    RIGHT_KEYS,
    assert_words_on_time,
    spoken_starts,
    stored_words,
)
from vllm_server import VllmServer

from tests.engine import speech
from tests.ingest.peers import FreeSwitchPeer, interleave, slin8k, slin16k

pytestmark = pytest.mark.integration


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
    async with fork_socket(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
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
    async with fork_socket(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
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


async def test_refusals_are_statuses_and_close_codes_that_say_why(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with fork_socket(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
        no_token = await refused(f"{base}/freeswitch")
        assert no_token.response.status_code == 401
        assert b"BRIDGE_FORKS_SECRET" in no_token.response.body
        wrong = await refused(f"{base}/nosuch?token={SECRET}")
        assert wrong.response.status_code == 404 and b"/freeswitch" in wrong.response.body
        bad_url = await closed_after(f"{base}/freeswitch?token={SECRET}&mix=quad", ["{}"])
        assert bad_url == (1008, "mix='quad': expected mono, mixed or stereo", [])
        odd = await closed_after(f"{base}/freeswitch?token={SECRET}&uuid=odd", ["{}", bytes(321)])
        assert odd[0] == 1007 and "not whole 1-channel pcm16/8000 samples" in str(odd[1])
        assert odd[2] == []
        doc = await ended(store)
        assert doc["call"]["end_cause"] == "protocol-error"
    async with fork_socket(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)) as (base, _):
        full = await refused(f"{base}/freeswitch?token={SECRET}")
        assert full.response.status_code == 503 and full.response.headers["Retry-After"] == "5"


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The FreeSWITCH fuzzer (tests/ingest/fuzz/freeswitch.py): 10,000+ messages over hundreds
    of connections, 16 at a time: bad URLs, missing or broken metadata, odd byte counts, messages
    over the limit, reused call uuids, drops without a close.  Nothing escapes a connection,
    every call taken ends stored, and a good stream afterwards is served."""
    run = await fuzz("freeswitch", tmp_path / "t.db", endpoint_of(vllm_server, max_legs=6), seed=15)
    run.assert_survived(min_calls=30)
    (doc,) = run.served
    assert doc["call"]["end_cause"] == "hangup"
