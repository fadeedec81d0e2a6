"""Asterisk chan_websocket into the bridge's media-fork WebSocket (/asterisk).

The peer (tests/ingest/peers.py ``AsteriskWsPeer``) is a WebSocket channel as
``channels/chan_websocket.c`` runs one: MEDIA_START (JSON or plain text), then the channel's
audio in its format every 20 ms, DTMF_END events, a close at hangup.  Both directions of a call
are two channels with one call key.  Speech is flite, sent in real time, transcribed by the
embedded engine; asserted in SQLite (legs, roles, words on time, channel variables, DTMF, end
cause) and on the socket (the close codes and reasons of refusals).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
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
from test_fork_freeswitch import SECRET, forks
from vllm_server import VllmServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

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
    async with forks(tmp_path / "t.db", endpoint_of(engine_server)) as (base, store):
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
    assert dtmf["leg_id"] == legs["caller"]["id"] and dtmf["detail"] == "digit=5"
    assert abs(dtmf["at_ms"] - 51 * 20) <= 100


async def test_refusals_close_with_a_code_and_a_reason(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server)) as (base, store):
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
        with pytest.raises(InvalidStatus) as no_token:
            async with connect(f"{base}/asterisk"):
                pass
        assert no_token.value.response.status_code == 401


def start_text(rng: random.Random) -> str | bytes:
    """A first message: mostly a MEDIA_START Asterisk could send, sometimes not."""
    fmt = rng.choice(["ulaw", "alaw", "slin", "slin16", "slin16", "opus", "g729", "slin12"])
    peer = AsteriskWsPeer(
        "ws://unused",
        fmt=fmt,
        json_control=rng.random() < 0.5,
        legacy=rng.random() < 0.2,
        variables={"BRIDGE_CALL": f"k{rng.randrange(20)}"} if rng.random() < 0.3 else None,
    )
    if rng.random() < 0.85:
        return peer.media_start()
    broken: list[str | bytes] = [
        bytes(640),
        "{",
        "MEDIA_START",
        '{"event":"MEDIA_START"}',
        "DTMF_END digit:1",
        "\x00",
    ]
    return rng.choice(broken)


def hostile_messages(rng: random.Random) -> tuple[str, list[str | bytes], str]:
    """One connection's URL query, messages and ending (close | drop)."""
    query = rng.choice(
        [
            "",
            "",
            f"call=k{rng.randrange(20)}",
            f"call=k{rng.randrange(20)}&role=caller",
            f"call=k{rng.randrange(20)}&role=callee",
            "role=boss",
            "format=slin16",
            "call=" + "x" * 300,
        ]
    )
    messages: list[str | bytes] = [start_text(rng)]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            messages.append(rng.randbytes(rng.choice([160, 320, 640, 0, 1, 3, 321, 2000])))
        elif kind < 0.8:
            messages.append(
                rng.choice(
                    [
                        "DTMF_END digit:5",
                        '{"event":"DTMF_END","digit":"#"}',
                        "DTMF_END digit:55",
                        '{"event":"DTMF_END","digit":7}',
                        "MEDIA_XOFF",
                        "MEDIA_XON",
                        '{"event":"STATUS","queue_length":3}',
                        "ERROR channel_id:1.1 error_text:Unable to parse JSON command",
                        "SOMETHING_NEW key:value",
                    ]
                )
            )
        elif kind < 0.9:
            messages.append(rng.choice(["{", "[]", "\x00", "x" * 5000, "hello", '{"event":5}']))
        elif kind < 0.95:
            messages.append(start_text(rng))
        else:
            messages.append(bytes(rng.choice([70_000, 300_000])))  # over the limits: 1009
    return query, messages, rng.choice(["close", "drop"])


async def test_hostile_streams_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The chan_websocket fuzzer: 10,000+ messages over hundreds of connections, 16 at a time:
    MEDIA_START in both forms and in formats the bridge refuses, none at all, twice, broken
    JSON, odd byte counts, bad digits, unknown events, messages over the limits, reused call
    keys and roles, drops without a close.  Nothing escapes a connection, every call taken ends
    stored, and a good stream afterwards is served."""
    rng = random.Random(20)
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
                async with connect(f"{base}/asterisk?token={SECRET}&{query}") as ws:
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
        peer = AsteriskWsPeer(f"{base}/asterisk?token={SECRET}&call=after", fmt="slin")
        await peer.connect()
        await peer.stream(bytes(3200))
        await peer.hangup()
        doc = await ended(store, 60, count=len(taken) + 1)
        assert doc["call"]["end_cause"] == "hangup"
        assert time.monotonic() - started < 240
    assert not failures, failures[:3]
