"""The ARI controller against Asterisk's side of ARI and externalMedia RTP.

The peer (tests/ingest/peers/ari.py) is Asterisk's ARI as its published schema describes it:
REST under ``/ari``, the events WebSocket, snoop channels and ``UnicastRTP`` externalMedia
channels that send what they are bridged with as RTP (slin16: big-endian L16, PT 118) paced in
real time.  Speech is flite, transcribed by the embedded engine; asserted in SQLite (two legs
with their roles, words at the times they were spoken, the channel as metadata, the end cause)
and in the REST calls the controller made (every call continues in the dialplan, everything it
made is taken down).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from engine_server import EngineServer
from forks import ari_controller, ended, endpoint_of
from test_embedded_engine import LEFT, LEFT_KEYS, RIGHT, RIGHT_KEYS, spoken_starts
from vllm_server import VllmServer

from tests.engine import speech
from tests.ingest.fuzz import rtp as rtp_fuzz
from tests.ingest.peers import FakeAsterisk

pytestmark = pytest.mark.integration
SUMMARY = re.compile(r"RTP from Asterisk: (\d+) packets, \d+ lost, \d+ late, (\d+) invalid")


def made(pbx: FakeAsterisk, method: str, path_end: str) -> list[dict[str, str]]:
    """The query of each REST request ``method`` whose path ends with ``path_end``."""
    return [q for m, p, q in pbx.requests if m == method and p.endswith(path_end)]


def words_on_call_clock(doc: dict[str, Any], leg: dict[str, Any], media_ms: int) -> dict[str, int]:
    """The leg's final words, each at its start on the clock of the audio the peer sent (the
    leg starts when its port opens, before the first RTP packet)."""
    shift = media_ms - leg["started_at_ms"]
    words: dict[str, int] = {}
    for segment in doc["segments"]:
        if segment["leg_id"] == leg["id"] and segment["final"]:
            for word in segment["words"]:
                words.setdefault(speech.normalize(word["text"]), word["start_ms"] - shift)
    return words


async def test_a_stasis_call_is_tapped_in_both_directions_with_words_on_time(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    async with (
        FakeAsterisk() as pbx,
        ari_controller(tmp_path / "t.db", endpoint_of(engine_server), pbx) as (_, store),
    ):
        call = await pbx.call(left.audio, right.audio, variables={"AGENT": "alice"})
        doc = await ended(store)
        await asyncio.sleep(0.5)  # the teardown requests after the leg ended
    assert doc["call"]["source"] == "asterisk" and doc["call"]["end_cause"] == "hangup"
    assert doc["call"]["title"] == "+15551230001 → +15551230002"
    legs = {leg["role"]: leg for leg in doc["legs"]}
    assert sorted(legs) == ["callee", "caller"]
    assert {leg["codec"] for leg in legs.values()} == {"l16/16000"}
    assert legs["caller"]["label"] == "+15551230001 (in)"
    assert call.started_at_ms is not None
    for role, built, keys in (("caller", left, LEFT_KEYS), ("callee", right, RIGHT_KEYS)):
        words = words_on_call_clock(doc, legs[role], call.started_at_ms)
        assert keys <= words.keys(), (role, sorted(words))
        spoken = spoken_starts(built)
        for key in keys:
            assert abs(words[key] - spoken[key]) <= 500, (role, key, words[key], spoken[key])
    (start,) = [json.loads(e["detail"]) for e in doc["events"] if e["kind"] == "asterisk.start"]
    assert start["id"] == call.channel_id and start["caller"]["number"] == "+15551230001"
    assert start["channelvars"]["AGENT"] == "alice" and start["dialplan"]["app_name"] == "Stasis"
    # The REST calls: per direction a bridge, a snoop and an externalMedia channel bridged
    # together; the call continued; at the end the externalMedia channels and bridges went.
    snoops = made(pbx, "POST", "/snoop")
    assert sorted(q["spy"] for q in snoops) == ["in", "out"]
    assert all(q["app"] == "bridge" and q["whisper"] == "none" for q in snoops)
    media = made(pbx, "POST", "/externalMedia")
    assert len(media) == 2
    for query in media:
        assert query["format"] == "slin16" and query["encapsulation"] == "rtp"
        assert query["external_host"].startswith("127.0.0.1:")
    assert len({q["external_host"] for q in media}) == 2  # one port per leg
    assert made(pbx, "POST", f"/channels/{call.channel_id}/continue") == [{}]
    assert not set(call.created_channels) & set(pbx.channels)  # nothing of it left
    assert not pbx.bridges
    assert min(call.sent.values()) > 100  # both directions streamed (20 ms packets)


async def test_with_one_leg_of_capacity_the_callee_is_refused_and_the_call_goes_on(
    vllm_server: VllmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audio = speech.build([0.2, "one two three", 0.2]).audio
    endpoint = endpoint_of(vllm_server, max_legs=1)
    caplog.set_level(logging.WARNING, logger="bridge.ingest.ari")
    async with (
        FakeAsterisk() as pbx,
        ari_controller(tmp_path / "t.db", endpoint, pbx, format="ulaw") as (_, store),
    ):
        call = await pbx.call(audio, audio, directions=["in"])
        doc = await ended(store)
    assert [leg["role"] for leg in doc["legs"]] == ["caller"]
    assert doc["legs"][0]["codec"] == "pcmu/8000"
    assert [q["spy"] for q in made(pbx, "POST", "/snoop")] == ["in"]
    assert made(pbx, "POST", f"/channels/{call.channel_id}/continue") == [{}]
    assert f"ARI channel {call.channel_id}: callee leg not transcribed" in caplog.text
    assert "capacity is full" in caplog.text


async def test_a_wrong_password_is_named_and_a_dropped_event_socket_comes_back(
    vllm_server: VllmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.ingest.ari")
    endpoint = endpoint_of(vllm_server)
    async with FakeAsterisk() as pbx:
        async with ari_controller(
            tmp_path / "a.db", endpoint, pbx, connected=False, password="wrong"
        ) as (controller, _):
            await asyncio.sleep(1.5)
            assert not controller.connected.is_set() and pbx.event_connections == 0
        assert "HTTP 401 (wrong ARI user or password)" in caplog.text
        assert made(pbx, "GET", "/ari/events"), "the controller never tried"
        async with ari_controller(tmp_path / "b.db", endpoint, pbx) as (controller, store):
            await pbx.drop_events()  # Asterisk restarts
            audio = speech.build([0.2, "one two three", 0.2]).audio
            await pbx.call(audio, audio, setup_timeout_s=15)  # waits for a subscriber first
            assert pbx.event_connections == 2
            drops = [r for r in caplog.records if "ARI events at" in r.message]
            assert any("401" not in r.message for r in drops)  # the drop was logged too
            doc = await ended(store)
    assert sorted(leg["role"] for leg in doc["legs"]) == ["callee", "caller"]


async def test_hostile_rtp_on_a_leg_port_is_counted_and_the_call_still_ends_stored(
    vllm_server: VllmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10,000 datagrams of tests/ingest/fuzz/rtp.py (bad headers, sizes, payload types, SSRC
    switches, sequence and timestamp jumps) on both legs' ports, then a good call."""
    caplog.set_level(logging.INFO)
    rng = random.Random(15)
    raw = rtp_fuzz.datagrams(rng, 10_000)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        async with (
            FakeAsterisk() as pbx,
            ari_controller(tmp_path / "t.db", endpoint_of(vllm_server), pbx) as (_, store),
        ):
            hostile = await pbx.start_call(raw=raw, raw_interval_ms=1)
            await hostile.wait(60)
            doc = await ended(store)
            assert doc["call"]["end_cause"] == "hangup"
            assert sorted(leg["role"] for leg in doc["legs"]) == ["callee", "caller"]
            assert set(hostile.packets.values()) == {10_000}
            audio = speech.build([0.2, "one two three", 0.2]).audio
            await pbx.call(audio, audio)
            doc = await ended(store, count=2)
            assert doc["call"]["end_cause"] == "hangup" and len(doc["legs"]) == 2
    finally:
        loop.set_exception_handler(None)
    assert not unhandled, unhandled
    counts = [
        tuple(int(n) for n in found.groups())
        for r in caplog.records
        if (found := SUMMARY.search(r.getMessage()))
    ]
    assert len(counts) == 4, counts  # each port's counters, logged when its leg ended
    hostile_ports = [c for c in counts if c[1] > 0]
    assert len(hostile_ports) == 2, counts
    assert all(packets > 1000 and invalid > 100 for packets, invalid in hostile_ports), counts
