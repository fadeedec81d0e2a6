"""Twilio Media Streams into the bridge's media-fork WebSocket (/twilio).

The peer (tests/ingest/peers/twilio.py) streams as Twilio does: a signed upgrade
(``X-Twilio-Signature`` from the ``twilio`` package's RequestValidator), ``connected``,
``start``, base64 µ-law ``media`` per track every 20 ms with its timestamp, ``dtmf``, ``stop``.
Speech is flite, sent in real time, transcribed by the embedded engine; asserted in SQLite
(legs, roles, words on time, metadata, DTMF, end cause).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from engine_server import EngineServer
from forks import TWILIO_PUBLIC as PUBLIC
from forks import TWILIO_TOKEN as TOKEN
from forks import closed_after, ended, endpoint_of, fuzz, listener, refused
from forks import twilio_peer as peer
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
from websockets.exceptions import InvalidStatus

from tests.engine import speech
from tests.ingest.peers import CONNECTED, TwilioPeer, ulaw8k

pytestmark = pytest.mark.integration


twilio = listener("twilio", path="/twilio")


async def test_both_tracks_are_caller_and_callee_with_words_on_time_metadata_and_dtmf(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """``<Start><Stream track="both_tracks">``: one socket, two legs."""
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    async with twilio(tmp_path / "t.db", endpoint_of(engine_server)) as (url, store):
        call = peer(url, parameters={"agent": "alice", "queue": "billing"})
        await call.connect()
        audio = {"inbound": ulaw8k(left.audio), "outbound": ulaw8k(right.audio)}
        await call.stream(audio, dtmf_at_ms={1000: "7"})
        await call.stop()
        doc = await ended(store)
    assert doc["call"]["source"] == "twilio" and doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert {leg["codec"] for leg in legs.values()} == {"pcmu/8000"}
    assert_words_on_time(stored_words(doc, legs["caller"]["id"]), spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(stored_words(doc, legs["callee"]["id"]), spoken_starts(right), RIGHT_KEYS)
    (start,) = [e for e in doc["events"] if e["kind"] == "twilio.start"]
    metadata = json.loads(start["detail"])
    assert metadata["callSid"] == call.call_sid and metadata["accountSid"] == call.account_sid
    assert metadata["streamSid"] == call.stream_sid
    assert metadata["customParameters"] == {"agent": "alice", "queue": "billing"}
    assert metadata["tracks"] == ["inbound", "outbound"]
    (dtmf,) = [e for e in doc["events"] if e["kind"] == "dtmf"]
    assert (
        dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=*"
    )  # masked by default
    assert abs(dtmf["at_ms"] - 1000) <= 200


async def test_a_second_of_discarded_media_keeps_the_later_words_on_time(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """Two streams of one call (``inbound_track`` and ``outbound_track``, roles named by a
    parameter) are one call; Twilio drops 1 s of the outbound track (congestion) and the
    timestamps go on: the silence is put back, the words after it keep their times."""
    before = speech.build([0.3, "Please call Alice", 2.5], by_word=True)
    after = speech.build([2.0, "tomorrow morning", 0.8], by_word=True)
    call_sid = "CA" + "42" * 16
    async with twilio(tmp_path / "t.db", endpoint_of(engine_server)) as (url, store):
        roles = {"roles": "customer,agent"}
        inbound = peer(url, call_sid=call_sid, tracks=("inbound",), parameters=roles)
        outbound = peer(url, call_sid=call_sid, tracks=("outbound",), parameters=roles)
        await inbound.connect()
        await outbound.connect()
        await asyncio.gather(
            inbound.stream({"inbound": ulaw8k(before.audio)}),
            outbound.stream({"outbound": ulaw8k(after.audio)}, skip_ms={"outbound": (800, 1800)}),
        )
        await inbound.stop()
        await outbound.stop()
        doc = await ended(store)
    assert doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["agent", "customer"]
    customer = stored_words(doc, legs["customer"]["id"])
    assert_words_on_time(customer, spoken_starts(before), {"alice"})
    agent = stored_words(doc, legs["agent"]["id"])
    assert_words_on_time(agent, spoken_starts(after), {"tomorrow", "morning"})


async def test_signatures_refusals_and_close_codes_say_why(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with twilio(tmp_path / "t.db", endpoint_of(vllm_server)) as (url, store):
        missing = await refused(url)
        assert missing.response.status_code == 403
        assert b"X-Twilio-Signature" in missing.response.body
        wrong = TwilioPeer(url, auth_token="not-the-token", signed_url=f"{PUBLIC}/twilio")
        other_url = TwilioPeer(url, auth_token=TOKEN, signed_url=f"{PUBLIC}/elsewhere")
        for bad in (wrong, other_url):
            with pytest.raises(InvalidStatus) as caught:
                await bad.connect()
            assert caught.value.response.status_code == 403
            assert b"BRIDGE_FORKS_PUBLIC_URL" in caught.value.response.body
        secret_only = await refused(f"{url}?token=other")  # the shared secret is not enough
        assert secret_only.response.status_code == 403
        good = peer(url)
        await good.connect()
        await good.stream({"inbound": b"\xff" * 1600, "outbound": b"\xff" * 1600})
        await good.stop()
        doc = await ended(store)
        assert doc["call"]["end_cause"] == "hangup" and len(doc["legs"]) == 2
        header = {"X-Twilio-Signature": good.signature or ""}
        sid = '"streamSid": "MZ1"'
        cases = [
            ([CONNECTED, '{"event": "media", "sequenceNumber": "1"}'], "media before start"),
            ([CONNECTED, "{"], "a message that is not JSON"),
            ([CONNECTED, b"\x00"], "a binary message"),
            ([CONNECTED, f'{{"event": "rtp", "sequenceNumber": "2", {sid}}}'], "unknown event"),
            (['{"event": "start"}'], "start before connected"),
        ]
        for messages, reason in cases:
            code, why, got = await closed_after(url, messages, additional_headers=header)
            assert code == 1008 and why is not None and reason in why and not got, (code, why, got)
    async with twilio(tmp_path / "open.db", endpoint_of(vllm_server), twilio_auth_token=None) as (
        url,
        _,
    ):
        assert (await refused(url)).response.status_code == 403  # no token: the secret applies
        async with connect(f"{url}?token=other") as ws:
            await ws.send(CONNECTED)
    async with twilio(tmp_path / "host.db", endpoint_of(vllm_server), public_url=None) as (url, _):
        # No public URL: the signed URL is wss:// + the Host header + the path.
        by_host = TwilioPeer(url, auth_token=TOKEN, signed_url=url.replace("ws://", "wss://"))
        await by_host.connect()
        await by_host.stop()
        twice = [("X-Twilio-Signature", by_host.signature or "")] * 2
        assert (await refused(url, additional_headers=twice)).response.status_code == 403
    async with twilio(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0)) as (url, _):
        with pytest.raises(InvalidStatus) as full:
            await peer(url).connect()
        assert full.value.response.status_code == 503
        assert full.value.response.headers["Retry-After"] == "5"


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The Twilio fuzzer (tests/ingest/fuzz/twilio.py): 10,000+ messages over hundreds of
    signed connections, 16 at a time: missing connected/start, bad tracks and roles, media on
    unannounced tracks, bad base64 and timestamps, sequence numbers out of order, unknown events,
    non-JSON, binary, reused call SIDs, drops without a stop.  Nothing escapes a connection,
    every call taken ends stored, and a good stream afterwards is served."""
    run = await fuzz("twilio", tmp_path / "t.db", endpoint_of(vllm_server, max_legs=8), seed=24)
    run.assert_survived(min_calls=25, within_s=120)
    (doc,) = run.served
    assert doc["call"]["end_cause"] == "hangup"
