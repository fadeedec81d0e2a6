"""Genesys Cloud AudioHook (protocol v2) into the bridge's media-fork WebSocket.

The peer (tests/ingest/peers.py) is Genesys as the AudioHook specification and the reference
client describe it: X-API-KEY (and a signed upgrade), the open transaction, stereo PCMU with the
customer (external) left and the agent (internal) right, 100 ms per message in real time, ping,
paused/resumed, and the close transaction.  Speech is flite, transcribed by the embedded engine;
asserted in SQLite (legs, roles, words on time, metadata, end cause) and on the socket.
"""

from __future__ import annotations

import asyncio
import base64
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
from test_fork_freeswitch import forks, refused
from vllm_server import VllmServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.ingest import audiohook
from tests.engine import speech
from tests.ingest.peers import AudioHookPeer, interleave_ulaw, ulaw8k

pytestmark = pytest.mark.integration
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
CLIENT_SECRET = base64.b64encode(b"the integration's client secret").decode()
SECRET_BYTES = base64.b64decode(CLIENT_SECRET)
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
AUTH = {"audiohook_api_key": API_KEY, "audiohook_client_secret": CLIENT_SECRET}


def peer(base: str, **kwargs: Any) -> AudioHookPeer:
    return AudioHookPeer(f"{base}/audiohook", api_key=API_KEY, client_secret=SECRET_BYTES, **kwargs)


async def test_stereo_pcmu_is_customer_and_agent_with_words_on_time_across_a_pause(
    engine_server: EngineServer, tmp_path: Path
) -> None:
    """The customer speaks (left), Genesys pauses the stream 1 s (paused ... resumed), then the
    agent speaks (right): both legs' words land where they were spoken, the pause included."""
    left, right = speech.build(LEFT, by_word=True), speech.build(RIGHT, by_word=True)
    async with forks(tmp_path / "t.db", endpoint_of(engine_server), **AUTH) as (base, store):
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


async def test_api_key_and_signature_are_checked_in_the_handshake(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server), **AUTH) as (base, _):
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
    async with forks(tmp_path / "full.db", endpoint_of(vllm_server, max_legs=0), **AUTH) as (
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
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server), rejoin_s=2.0, **AUTH) as (
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


NULL = "00000000-0000-0000-0000-000000000000"


def hostile_session(rng: random.Random) -> list[str | bytes]:
    """One connection's messages: mostly a plausible session, broken in one of many ways."""
    sid, seq = str(uuid.uuid4()), 0

    def message(kind: str, **parameters: Any) -> str:
        nonlocal seq
        seq += 1
        body: dict[str, Any] = {
            "version": "2",
            "id": sid,
            "type": kind,
            "seq": seq,
            "serverseq": 0,
            "position": "PT0S",
            "parameters": parameters,
        }
        if rng.random() < 0.04:  # one field broken
            key, value = rng.choice(
                [
                    ("version", rng.choice(["1", 2, None])),
                    ("id", rng.choice([str(uuid.uuid4()), "x", 7])),
                    ("seq", rng.choice([seq + 1, seq - 1, True, -1, 2**60, "1"])),
                    ("serverseq", rng.choice([99, -1, None])),
                    ("position", rng.choice(["PT١S", "PT1e9S", "", "PT999999999S", 1.5])),
                    ("parameters", rng.choice([[], None, "x"])),
                ]
            )
            body[key] = value
        return json.dumps(body)

    conversation = f"00000000-0000-4000-8000-{rng.randrange(60):012d}"
    media = rng.choice(
        [
            [STEREO],
            [STEREO],
            [STEREO],
            [{"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}],
            [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 16000}],
            "PCMU",
        ]
    )
    out: list[str | bytes] = []
    if rng.random() < 0.9:
        out.append(
            message(
                "open",
                organizationId=str(uuid.uuid4()),
                conversationId=rng.choice([conversation] * 9 + [NULL]),
                participant={"id": sid, "ani": "+1", "aniName": "", "dnis": "+2"},
                media=media,
                customConfig=rng.choice([{}, {"a": 1}, {}, []]),
            )
        )
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            out.append(rng.randbytes(rng.choice([1600] * 12 + [800, 0, 1, 3, 1601])))
        elif kind < 0.85:
            out.append(message(rng.choice(["ping", "ping", "paused", "update", "error"])))
        elif kind < 0.9:
            out.append(message("resumed", start="PT0S", discarded=rng.choice(["PT0.2S", "PT9S"])))
        elif kind < 0.95:
            discarded = rng.choice(["PT0.5S", "PT99999S", "PT0.1S", "PT-1S"])
            out.append(message("discarded", start="PT0S", discarded=discarded))
        elif kind < 0.98:
            out.append(rng.choice(["{", "[]", "null", "x" * 70_000, '{"version": "2"}']))
        else:
            out.append(message(rng.choice(["open", "hello"]), media=[]))
    if rng.random() < 0.7:
        out.append(message("close", reason=rng.choice(["end", "reconnect", "error", 5])))
    return out


async def test_hostile_sessions_never_stop_the_listener_and_every_call_ends_stored(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """The AudioHook fuzzer: 10,000+ messages over hundreds of connections, 16 at a time:
    broken counters, versions, ids, durations, offers, JSON, audio before open and odd byte
    counts, reused conversation ids, drops without a close.  Nothing escapes a connection,
    every call taken ends stored, and a good session afterwards is served."""
    rng = random.Random(21)
    failures: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: failures.append(c))
    sent = 0
    async with forks(
        tmp_path / "t.db", endpoint_of(vllm_server, max_legs=8), rejoin_s=0.5, **AUTH
    ) as (base, store):
        headers = peer(base).headers

        async def one() -> int:
            messages = hostile_session(rng)
            try:
                async with connect(f"{base}/audiohook", additional_headers=headers()) as ws:
                    for message in messages:
                        await ws.send(message)
                    if rng.random() < 0.3:
                        ws.transport.abort()
            except (ConnectionClosed, InvalidStatus, OSError):
                pass  # refused (busy) or closed by the bridge for what it sent
            return len(messages)

        started = time.monotonic()
        while sent < 10_000:
            sent += sum(await asyncio.gather(*(one() for _ in range(16))))
        taken = await store.list_calls(limit=1000)
        assert len(taken) > 20, len(taken)
        await ended(store, 120, count=len(taken))
        causes = {call.end_cause for call in await store.list_calls(limit=1000)}
        assert {"protocol-error", "hangup", "disconnected"} <= causes, causes
        good = peer(base)
        await good.connect()
        await good.stream(bytes(1600 * 3))
        await good.close()
        doc = await ended(store, 60, count=len(taken) + 1)
        assert doc["call"]["end_cause"] == "hangup"
        assert time.monotonic() - started < 240
    assert not failures, failures[:3]


async def test_a_stalled_session_is_disconnected_and_ends_as_a_drop(
    vllm_server: VllmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Genesys pings even while paused; a session that sends nothing for ``IDLE_S`` is told
    ``disconnect`` and its call, not back within ``rejoin_s``, ends ``disconnected``."""
    monkeypatch.setattr(audiohook, "IDLE_S", 1.0)
    async with forks(tmp_path / "t.db", endpoint_of(vllm_server), rejoin_s=0.5, **AUTH) as (
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
