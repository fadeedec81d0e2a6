"""Asterisk chan_websocket into the bridge's media-fork WebSocket (/asterisk).

The peer (tests/ingest/peers/asterisk_ws.py) is a WebSocket channel as
``channels/chan_websocket.c`` runs one: MEDIA_START (JSON or plain text), then the channel's
audio in its format every 20 ms, DTMF_END events, a close at hangup.  Both directions of a call
are two channels with one call key.  Speech is flite, sent in real time, transcribed by the
embedded engine; asserted in SQLite (legs, roles, words on time, channel variables, DTMF, end
cause) and on the socket (the close codes and reasons of refusals).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from engine_server import EngineServer
from forks import SECRET, ended, endpoint_of, fork_socket, fuzz, refused
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
from tests.ingest.peers import AsteriskWsPeer, asterisk_audio

pytestmark = pytest.mark.integration


async def test_two_channels_of_one_call_are_caller_and_callee_with_words_dtmf_and_variables(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """The caller's direction is a ulaw channel with JSON control messages whose channel
    variables name the call and role; the callee's is slin16 with the plain-text MEDIA_START
    and the call and role in the URL (``v(call=...,role=callee)``)."""
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    call = f"call-{uuid.uuid4().hex[:8]}"
    async with fork_socket(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
        caller = AsteriskWsPeer(
            f"{base}/asterisk/bridge?token={SECRET}",
            fmt="ulaw",
            variables={"__BRIDGE_CALL": call, "BRIDGE_ROLE": "caller", "AGENT": "alice"},
        )
        callee = AsteriskWsPeer(
            f"{base}/asterisk?token={SECRET}&call={call}&role=callee",
            fmt="slin16",
            json_control=False,
        )
        await asyncio.gather(caller.connect(), callee.connect())
        await asyncio.gather(
            caller.stream(asterisk_audio("ulaw", left.audio), dtmf_at={50: "5"}),
            callee.stream(asterisk_audio("slin16", right.audio)),
        )
        await asyncio.gather(caller.hangup(), callee.hangup())
        doc = await ended(store)
    assert doc["call"]["source"] == "asterisk" and doc["call"]["end_cause"] == "hangup"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert (legs["caller"]["codec"], legs["callee"]["codec"]) == ("pcmu/8000", "pcm16/16000")
    left_words = stored_words(doc, legs["caller"]["id"])
    right_words = stored_words(doc, legs["callee"]["id"])
    assert_words_on_time(left_words, spoken_starts(left), LEFT_KEYS)
    assert_words_on_time(right_words, spoken_starts(right), RIGHT_KEYS)
    assert not RIGHT_KEYS & left_words.keys() and not LEFT_KEYS & right_words.keys()
    starts = {
        about["role"]: about
        for about in (
            json.loads(e["detail"]) for e in doc["events"] if e["kind"] == "asterisk.start"
        )
    }
    assert sorted(starts) == ["callee", "caller"]
    assert starts["caller"]["channel_variables"]["AGENT"] == "alice"
    assert starts["caller"]["channel_id"] == caller.channel_id
    assert starts["caller"]["control_message_format"] == "json"
    assert starts["callee"]["channel"] == callee.channel and starts["callee"]["format"] == "slin16"
    assert starts["callee"]["control_message_format"] == "plain-text"
    assert {about["call"] for about in starts.values()} == {call}
    (dtmf,) = [e for e in doc["events"] if e["kind"] == "dtmf"]
    assert (
        dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=*"
    )  # masked by default
    assert abs(dtmf["at_ms"] - 51 * 20) <= 100


async def test_refusals_close_with_a_code_and_a_reason(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with fork_socket(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
        url = f"{base}/asterisk?token={SECRET}"
        early = AsteriskWsPeer(url)
        await early.connect(start=False)
        assert early.ws is not None
        await early.ws.send(bytes(640))  # audio before MEDIA_START
        assert await early.closed_with() == (1008, "audio before MEDIA_START")
        opus = AsteriskWsPeer(url, fmt="opus")
        await opus.connect()
        code, reason = await opus.closed_with()
        assert code == 1003
        assert reason == "format 'opus' is not taken: use c(slin16), c(slin), c(ulaw) or c(alaw)"
        legacy = AsteriskWsPeer(url, fmt="slin", json_control=False, legacy=True)
        await legacy.connect()
        code, reason = await legacy.closed_with()
        assert code == 1008 and reason is not None and "names no format" in reason
        twice = AsteriskWsPeer(f"{url}&call=twice")
        await twice.connect()
        await twice.stream(bytes(640 * 5))
        assert twice.ws is not None
        await twice.ws.send(twice.media_start())
        assert await twice.closed_with() == (1008, "a second MEDIA_START")
        huge = AsteriskWsPeer(f"{url}&call=huge")
        await huge.connect()
        assert huge.ws is not None
        await huge.ws.send(bytes(70_000))
        code, reason = await huge.closed_with()
        assert code == 1009 and reason is not None and "65500" in reason
        doc = await ended(store, count=2)
        assert doc["call"]["end_cause"] == "protocol-error"
        # The first releases' MEDIA_START names no format: the URL's format= stands in.
        old = AsteriskWsPeer(
            f"{url}&format=slin&call=old", fmt="slin", legacy=True, json_control=False
        )
        await old.connect()
        await old.stream(bytes(320 * 10))
        await old.hangup()
        doc = await ended(store, count=3)
        assert doc["call"]["end_cause"] == "hangup" and doc["legs"][0]["codec"] == "pcm16/8000"
        assert [e for e in doc["events"] if e["kind"] == "asterisk.start"]
        no_token = await refused(f"{base}/asterisk")
        assert no_token.response.status_code == 401


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The chan_websocket fuzzer (tests/ingest/fuzz/asterisk_ws.py): 10,000+ messages over
    hundreds of connections, 16 at a time: MEDIA_START in both forms and in formats the bridge
    refuses, none at all, twice, broken JSON, odd byte counts, bad digits, unknown events,
    messages over the limits, reused call keys and roles, drops without a close.  Nothing
    escapes a connection, every call taken ends stored, and a good stream afterwards is
    served."""
    run = await fuzz("asterisk", tmp_path / "t.db", endpoint_of(vllm_server, max_legs=16), seed=20)
    run.assert_survived(min_calls=30)
    (doc,) = run.served
    assert doc["call"]["end_cause"] == "hangup"
