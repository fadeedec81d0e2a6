"""Asterisk AudioSocket into the bridge: two sockets of one call become its two legs.

The peer (tests/ingest/peers/audiosocket.py) speaks AudioSocket as Asterisk's ``AudioSocket()``
does; the speech is flite, sent in real time, transcribed by the embedded engine; everything is
asserted on what lands in SQLite: the legs and roles, the words at the times they were spoken
(±500 ms), the metadata, DTMF and the end cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from engine_server import EngineServer
from forks import audiosocket, closed_by_bridge, ended, endpoint_of, fuzz
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

from bridge.config.ingest import AudioSocketConfig
from bridge.core.forks.audiosocket import Kind, frame
from tests.engine import speech
from tests.ingest.peers import AudioSocketPeer, slin8k

pytestmark = pytest.mark.integration


async def test_two_sockets_of_one_uuid_are_caller_and_callee_with_their_words_on_time(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    uid = uuid.uuid4()
    async with audiosocket(tmp_path / "t.db", endpoint_of(engine_server)) as (server, store):
        caller, callee = AudioSocketPeer(server.port, uid), AudioSocketPeer(server.port, uid)
        await caller.connect()
        await callee.connect()
        caller.send(frame(Kind.AUDIO_SLIN, bytes(320)))  # the caller's audio comes first
        await asyncio.sleep(0.02)
        await asyncio.gather(
            caller.stream(slin8k(left.audio)[320:], dtmf_at={50: "5"}),
            callee.stream(slin8k(right.audio)),
        )
        await caller.hangup()
        await callee.hangup()
        doc = await ended(store)
    assert doc["call"]["source"] == "asterisk" and doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert {leg["codec"] for leg in legs.values()} == {"pcm16/8000"}
    left_words = stored_words(doc, legs["caller"]["id"])
    right_words = stored_words(doc, legs["callee"]["id"])
    assert_words_on_time(left_words, spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(right_words, spoken_starts(right), RIGHT_KEYS)
    assert not RIGHT_KEYS & left_words.keys() and not LEFT_KEYS & right_words.keys()
    (start,) = [e for e in doc["events"] if e["kind"] == "asterisk.start"]
    assert json.loads(start["detail"])["uuid"] == str(uid)
    (dtmf,) = [e for e in doc["events"] if e["kind"] == "dtmf"]
    assert (
        dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=*"
    )  # masked by default
    assert abs(dtmf["at_ms"] - 51 * 20) <= 100


async def test_a_socket_that_drops_and_comes_back_keeps_its_leg_and_its_times(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """pair_by = suffix: the UUID's last digit names the side.  The caller's socket drops (no
    hangup) after its first words and reconnects 1.5 s later: the same leg goes on, the time
    away is silence, so the words after it keep the times they were spoken at."""
    left = speech.build([0.5, "Please call Alice", 1.0], by_word=True)
    later = speech.build([0.5, "tomorrow morning", 1.0], by_word=True)
    base = uuid.uuid4().hex[:-1]
    async with audiosocket(
        tmp_path / "t.db", endpoint_of(engine_server), pair_by="suffix", rejoin_s=5.0
    ) as (server, store):
        peer = AudioSocketPeer(server.port, uuid.UUID(base + "0"))
        await peer.connect()
        await peer.stream(slin8k(left.audio))
        await peer.close()  # dropped: no hangup frame
        away_from = time.monotonic()
        await asyncio.sleep(1.5)
        peer = AudioSocketPeer(server.port, uuid.UUID(base + "0"))
        await peer.connect()
        rejoined_ms = (time.monotonic() - away_from) * 1000
        await peer.stream(slin8k(later.audio))
        await peer.hangup()
        doc = await ended(store)
    assert doc["call"]["end_cause"] == "hangup"
    (leg,) = doc["legs"]
    assert leg["role"] == "caller"
    words = stored_words(doc, leg["id"])
    offset_ms = left.audio.size / 16 + rejoined_ms
    spoken = spoken_starts(left) | {k: v + offset_ms for k, v in spoken_starts(later).items()}
    assert_words_on_time(words, spoken, {"alice", "tomorrow", "morning"})
    assert [e["kind"] for e in doc["events"] if e["kind"].startswith("fork.")] == ["fork.rejoin"]


async def test_a_stranger_is_refused_and_a_full_bridge_closes_new_calls(
    vllm_server: VllmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bridge.ingest")
    endpoint = endpoint_of(vllm_server, max_legs=1)
    async with audiosocket(tmp_path / "t.db", endpoint) as (server, store):
        server.config = AudioSocketConfig(enabled=True, port=0, allowed_sources=())
        stranger = AudioSocketPeer(server.port, uuid.uuid4())
        await stranger.connect()
        assert await closed_by_bridge(stranger)
        assert "refused: not in allowed_sources" in caplog.text
        server.config = AudioSocketConfig(enabled=True, port=0)
        first = AudioSocketPeer(server.port, uuid.uuid4())
        await first.connect()
        await first.stream(bytes(3200))
        second = AudioSocketPeer(server.port, uuid.uuid4())
        await second.connect()
        second.send(frame(Kind.AUDIO_SLIN, bytes(320)))
        assert await closed_by_bridge(second)
        assert "transcription capacity is full (1 legs)" in caplog.text
        await first.hangup()
        doc = await ended(store)
        assert len(await store.list_calls()) == 1
    assert doc["call"]["end_cause"] == "hangup"


async def test_hostile_connections_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The AudioSocket fuzzer (tests/ingest/fuzz/audiosocket.py): 10,000+ frames over hundreds
    of connections, 16 at a time, split at random byte boundaries: truncated frames, lengths past
    what follows, unknown kinds, audio before the UUID, a second UUID, odd byte counts, rate
    changes, bad DTMF, error frames, abrupt closes.  Nothing raises out of a connection, every
    call that was taken is stored as ended, and a good call afterwards is served."""
    endpoint = endpoint_of(vllm_server, max_legs=16)
    run = await fuzz(
        "audiosocket", tmp_path / "t.db", endpoint, seed=15, start_timeout_s=1.0, idle_timeout_s=1.0
    )
    run.assert_survived(min_calls=50)
    assert run.accepted is not None and run.accepted > 300, run.accepted
    (doc,) = run.served
    assert doc["call"]["end_cause"] == "hangup" and len(doc["legs"]) == 1
