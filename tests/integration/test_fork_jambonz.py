"""jambonz into the bridge's media-fork WebSocket: the listen verb and the custom speech API.

The peers (tests/ingest/peers/jambonz.py) speak as jambonz does: the listen verb's first text
frame with the call's attributes, binary L16, passDtmf text, Basic auth; the custom speech
vendor's Bearer key, start / LINEAR16 8 kHz / stop.  Speech is flite, sent in real time,
transcribed by the embedded engine; asserted in SQLite (legs, roles, words on time, metadata, end
cause) and, for the speech API, on the socket (the transcription messages jambonz gets back).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from engine_server import EngineServer
from forks import JAMBONZ_AUTH as AUTH
from forks import JAMBONZ_SECRET as SECRET
from forks import closed_after, ended, endpoint_of, fork_socket, fuzz, refused
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
from websockets.typing import Subprotocol

from bridge.export import to_json
from tests.engine import speech
from tests.ingest.peers import (
    JambonzListenPeer,
    JambonzSttPeer,
    basic_auth,
    interleave,
    slin8k,
    slin16k,
)

pytestmark = pytest.mark.integration


async def test_listen_stereo_16k_is_two_legs_with_words_on_time_and_the_call_attributes(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    call_sid = str(uuid.uuid4())
    endpoint = endpoint_of(engine_server)
    async with fork_socket(tmp_path / "t.db", endpoint, "jambonz") as (base, store):
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
    assert (
        dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=*"
    )  # masked by default
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
    endpoint = endpoint_of(engine_server)
    async with fork_socket(tmp_path / "t.db", endpoint, "jambonz") as (base, store):
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


async def test_refusals_basic_auth_401_and_errors_that_say_why(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    jambonz = [Subprotocol("audio.jambonz.org")]
    bearer = {"Authorization": f"Bearer {SECRET}"}
    async with fork_socket(tmp_path / "t.db", endpoint_of(vllm_server), "jambonz") as (base, store):
        listen = f"{base}/jambonz"
        none = await refused(listen, subprotocols=jambonz)
        assert none.response.status_code == 401
        assert none.response.headers["WWW-Authenticate"].startswith("Basic ")
        assert b"BRIDGE_JAMBONZ_USERNAME" in none.response.body
        wrong = await refused(listen, additional_headers=basic_auth(AUTH[0], "guess"))
        assert wrong.response.status_code == 401
        assert (await refused(listen, additional_headers=bearer)).response.status_code == 401
        assert (await refused(f"{base}/jambonz-stt")).response.status_code == 401
        ok = basic_auth(*AUTH)
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
    full_db, no_legs = tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)
    async with fork_socket(full_db, no_legs, "jambonz") as (base, _):
        full = await refused(f"{base}/jambonz-stt", additional_headers=bearer)
        assert full.response.status_code == 503 and full.response.headers["Retry-After"] == "5"


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The jambonz fuzzer (tests/ingest/fuzz/jambonz.py): 10,000+ messages over hundreds of
    connections on both paths, 16 at a time: broken or missing start frames, rates and mixes the
    bridge does not take, odd byte counts, messages over the limit, reused callSids, second
    starts, stops mid-stream, drops without a close.  Nothing escapes a connection, every call
    taken ends stored, and good streams afterwards are served."""
    run = await fuzz("jambonz", tmp_path / "t.db", endpoint_of(vllm_server, max_legs=16), seed=7)
    run.assert_survived(min_calls=30)
    listen, _ = run.served  # and the custom speech API's stop was answered (1000, "stopped")
    assert listen["call"]["end_cause"] == "hangup" and listen["call"]["source"] == "jambonz"
