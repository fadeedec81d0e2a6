"""Genesys Cloud AudioHook (protocol v2) into the bridge's media-fork WebSocket.

The peer (tests/ingest/peers/audiohook.py) is Genesys as the AudioHook specification and the
reference client describe it: X-API-KEY (and a signed upgrade), the open transaction, stereo
PCMU with the customer (external) left and the agent (internal) right, 100 ms per message in
real time, ping, paused/resumed, and the close transaction.  Speech is flite, transcribed by the
embedded engine; asserted in SQLite (legs, roles, words on time, metadata, end cause) and on the
socket.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from engine_server import EngineServer
from forks import AUDIOHOOK_API_KEY as API_KEY
from forks import audiohook_peer as peer
from forks import ended, endpoint_of, fuzz, listener, refused
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
from websockets.asyncio.client import connect

from bridge.core.types import LegSource
from bridge.ingest import audiohook
from bridge.leg import live_legs
from tests.engine import speech
from tests.ingest.peers import STEREO, AudioHookPeer, interleave_ulaw, ulaw8k

pytestmark = pytest.mark.integration


genesys_listener = listener("audiohook")


async def test_stereo_pcmu_is_customer_and_agent_with_words_on_time_across_a_pause(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """The customer speaks (left), Genesys pauses the stream 1 s (paused ... resumed), then the
    agent speaks (right): both legs' words land where they were spoken, the pause included."""
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    async with genesys_listener(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        genesys = peer(base)
        opened = await genesys.connect()
        assert opened["parameters"] == {
            "media": [STEREO],
            "startPaused": False,
        }
        assert (opened["seq"], opened["clientseq"], opened["id"]) == (1, 1, genesys.session_id)
        started = time.monotonic()
        customer = ulaw8k(left.audio)
        await genesys.stream(interleave_ulaw(customer, b"\xff" * len(customer)))
        await genesys.send("ping", rtt="PT0.05S")
        pong = await genesys.expect("pong")
        assert (pong["seq"], pong["clientseq"]) == (2, 2)
        await genesys.pause(1.0)
        resumed_ms = (time.monotonic() - started) * 1000
        agent = ulaw8k(right.audio)
        await genesys.stream(interleave_ulaw(b"\xff" * len(agent), agent))
        closed = await genesys.close()
        assert (closed["type"], closed["clientseq"], closed["parameters"]) == ("closed", 5, {})
        doc = await ended(store)
    assert doc["call"]["source"] == "genesys" and doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["agent", "customer"]
    assert {leg["codec"] for leg in legs.values()} == {"pcmu/8000"}
    assert_words_on_time(stored_words(doc, legs["customer"]["id"]), spoken_starts(left), LEFT_KEYS)
    later = {word: at + resumed_ms for word, at in spoken_starts(right).items()}
    assert_words_on_time(stored_words(doc, legs["agent"]["id"]), later, RIGHT_KEYS)
    (start,) = [e for e in doc["events"] if e["kind"] == "genesys.start"]
    metadata = json.loads(start["detail"])
    assert metadata["conversationId"] == genesys.conversation_id
    assert metadata["participant"]["ani"] == "+4930123456"
    assert metadata["customConfig"] == {"queue": "billing"} and metadata["language"] == "en-US"
    assert {"fork.pause", "fork.resume"} <= {e["kind"] for e in doc["events"]}
    # Genesys's pause is a payment step: the call is paused, each leg has a "paused" gap.
    calls = [(e["kind"], e["detail"]) for e in doc["events"] if e["kind"].startswith("call.")]
    assert calls == [("call.paused", "by=fork"), ("call.resumed", "by=fork")]
    paused = [g for g in doc["gaps"] if g["reason"] == "paused"]
    assert {g["leg_id"] for g in paused} == {leg["id"] for leg in legs.values()}
    assert all(700 <= g["duration_ms"] <= 1500 for g in paused), paused


async def test_a_paused_stream_feeds_its_asr_sessions_as_the_time_passes(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """While Genesys pauses (a payment step) nothing comes, but each leg's ASR session gets the
    time as silence as it passes (ForkCalls' keep-up, every 0.5 s): never an idle session holding
    its KV cache (vLLM #46815), never the whole pause sent at once when audio comes again."""
    async with genesys_listener(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
        genesys = peer(base)
        await genesys.connect()
        await genesys.stream(interleave_ulaw(b"\xff" * 8000, b"\xff" * 8000))  # 1 s, both sides
        pausing = asyncio.create_task(genesys.pause(3.0))
        await asyncio.sleep(2.5)
        legs = [leg for leg in live_legs() if leg.info.source is LegSource.GENESYS]
        handed = [leg.stream.samples_received / 16000 for leg in legs]
        filled = [leg.audio.samples_filled / 8000 for leg in legs]
        await pausing
        await genesys.close()
        doc = await ended(store)
    assert len(legs) == 2
    # 1 s of audio, then 2.5 s of pause of which all but 1.2 s at most (the catch-up threshold,
    # KEEP_S and one tick) is in: without the keep-up, 1.0 s each until audio came again.
    assert all(s >= 2.3 for s in handed), handed
    assert all(f >= 1.3 for f in filled), filled
    assert doc["call"]["end_cause"] == "hangup"


async def test_api_key_and_signature_are_checked_in_the_handshake(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with genesys_listener(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, _):
        wrong_key = await refused(f"{base}/audiohook", additional_headers={"X-API-KEY": "nope"})
        assert wrong_key.response.status_code == 401
        assert b"BRIDGE_AUDIOHOOK_API_KEY" in wrong_key.response.body
        unsigned = await refused(f"{base}/audiohook", additional_headers={"X-API-KEY": API_KEY})
        assert unsigned.response.status_code == 401 and b"unsigned" in unsigned.response.body
        forged = AudioHookPeer(f"{base}/audiohook", api_key=API_KEY, client_secret=b"guess")
        bad = await refused(f"{base}/audiohook", additional_headers=forged.headers())
        assert bad.response.status_code == 401 and b"does not match" in bad.response.body
        good = peer(base)
        assert (await good.connect())["type"] == "opened"
        await good.close()
    async with genesys_listener(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)) as (
        base,
        _,
    ):
        full = await refused(f"{base}/audiohook", additional_headers=peer(base).headers())
        assert full.response.status_code == 503 and full.response.headers["Retry-After"] == "5"


async def test_bad_offers_get_a_disconnect_and_a_reconnect_continues_the_legs(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """An offer the bridge cannot take is answered ``disconnect`` (reason error, why in info)
    and the close transaction still completes; a session closed with reason ``reconnect`` and
    a new session with the same conversationId are one call with the same two legs."""
    async with genesys_listener(tmp_path / "t.db", endpoint_of(vllm_server), rejoin_s=2.0) as (
        base,
        store,
    ):
        opus = peer(base)
        offer = [{"type": "audio", "format": "opus", "channels": ["external"]}]
        disconnect = await opus.connect(offer, answer="disconnect")
        assert disconnect["parameters"]["reason"] == "error"
        assert "no offered media format" in disconnect["parameters"]["info"]
        assert (await opus.close())["type"] == "closed"
        assert await store.list_calls() == []
        async with connect(f"{base}/audiohook", additional_headers=peer(base).headers()) as ws:
            await ws.send(bytes(1600))  # audio before open
            early = json.loads(await ws.recv())
        assert early["type"] == "disconnect" and early["parameters"] == {
            "reason": "error",
            "info": "Client Error: audio while the session is new",
        }

        conversation = str(uuid.uuid4())
        first = peer(base, conversation_id=conversation)
        await first.connect()
        await first.stream(bytes(1600 * 5))
        await first.close("reconnect")
        second = peer(base, conversation_id=conversation)
        await second.connect()
        await second.stream(bytes(1600 * 5))
        await second.close()
        doc = await ended(store)
        assert len(await store.list_calls()) == 1
    assert doc["call"]["end_cause"] == "hangup"
    assert sorted(leg["role"] for leg in doc["legs"]) == ["agent", "customer"]
    rejoined = [e["detail"].split()[0] for e in doc["events"] if e["kind"] == "fork.rejoin"]
    assert sorted(rejoined) == ["agent", "customer"]
    assert not [m for m in opus.received if m["type"] == "opened"]


async def test_hostile_sessions_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The AudioHook fuzzer (tests/ingest/fuzz/audiohook.py): 10,000+ messages over hundreds of
    connections, 16 at a time: broken counters, versions, ids, durations, offers, JSON, audio
    before open and odd byte counts, reused conversation ids, drops without a close.  Nothing
    escapes a connection, every call taken ends stored, and a good session afterwards is
    served."""
    endpoint = endpoint_of(vllm_server, max_legs=8)
    run = await fuzz("audiohook", tmp_path / "t.db", endpoint, seed=24)
    run.assert_survived(min_calls=20)
    assert {"protocol-error", "hangup", "disconnected"} <= run.causes.keys(), run.causes
    (doc,) = run.served
    assert doc["call"]["end_cause"] == "hangup"


async def test_a_stalled_session_is_disconnected_and_ends_as_a_drop(
    vllm_server: VllmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Genesys pings even while paused; a session that sends nothing for ``IDLE_S`` is told
    ``disconnect`` and its call, not back within ``rejoin_s``, ends ``disconnected``."""
    monkeypatch.setattr(audiohook, "IDLE_S", 1.0)
    async with genesys_listener(tmp_path / "t.db", endpoint_of(vllm_server), rejoin_s=0.5) as (
        base,
        store,
    ):
        stalled = peer(base)
        await stalled.connect()
        await stalled.stream(bytes(1600 * 3))
        disconnect = await stalled.expect("disconnect", timeout_s=5)
        assert disconnect["parameters"]["info"] == "Client Error: no message for 1 s"
        assert (await stalled.close())["type"] == "closed"
        doc = await ended(store)
    assert doc["call"]["end_cause"] == "disconnected"
