"""Hostile SIP input against real SIP workers (issue 12): nothing kills a worker, every INVITE
gets a final answer within a bounded time, calls in progress go on and are transcribed.

Peers: the ``bridge.sip.worker`` processes (PyPI pjsua2 wheel) behind :class:`SipIngest`, sipp
for the call that must survive, the raw UAC of ``tests/sip/fuzz.py`` for bytes sipp will not
send, and the scripted vLLM CPU server.  Everything is asserted on the wire and in SQLite.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sip import (
    PCMU_OFFER,
    Bridge,
    answered_port,
    endpoint_for,
    open_bridge,
    sip_settings,
    stderr_to,
    stream_scenario,
    tone,
    until,
)
from vllm_server import VllmServer

from bridge.core.redact import RedactionPolicy
from bridge.leg import LegSettings
from bridge.sip.ingest import SipIngest
from storage import TranscriptStore
from tests.sip.fuzz import Case, Generator, Message, Outcome, RawUac, campaign
from tests.sip.sipp import run_scenario

pytestmark = pytest.mark.integration

ANSWER_WITHIN_S = 2.0  # every INVITE's final response, from its first send (UDP resends at T1)

PLAIN_SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


async def send(bridge: Bridge, message: Message, transport: str = "udp") -> Outcome:
    uac = RawUac("127.0.0.1", bridge.settings.port, answer_timeout_s=5.0)
    await uac.start()
    try:
        return await uac.run(Case(message, []), transport)
    finally:
        await uac.close()


def pids(bridge: Bridge) -> list[int | None]:
    return [w.process.pid if w.process else None for w in bridge.ingest.workers]


async def alive_after(bridge: Bridge, before: list[int | None]) -> None:
    """The workers are the same processes, and still running, a moment later."""
    await asyncio.sleep(0.5)
    assert pids(bridge) == before
    assert all(w.process and w.process.returncode is None for w in bridge.ingest.workers)
    assert [w.restarts for w in bridge.ingest.workers] == [0] * len(before)


def unterminated_multipart(boundary: bytes = b"xyz") -> bytes:
    return b"--" + boundary + b"\r\nContent-Type: application/sdp\r\n\r\n" + PLAIN_SDP


@pytest.fixture
async def blocked(tmp_path: Path, vllm_server: VllmServer) -> AsyncIterator[Bridge]:
    """A bridge that takes calls from 10.0.0.0/8 only: the tests' 127.0.0.1 is a stranger."""
    settings = sip_settings(allowed_sources=("10.0.0.0/8",), transports=("udp", "tcp"))
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        yield bridge


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (b"multipart/mixed", unterminated_multipart()),  # no boundary parameter
        (b"multipart/mixed;boundary=xyz", unterminated_multipart()),  # no close delimiter
        (b"multipart/mixed;boundary=xyz", b"--xyz\r\nContent-Type: application/sdp\r\n\r\nv=0"),
    ],
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_strangers_unreadable_multipart_invite_is_403_and_the_worker_lives(
    blocked: Bridge, content_type: bytes, body: bytes, transport: str
) -> None:
    """Issue 12 §1: this killed the worker (pjsua2 freed the INVITE's rdata after our 403)."""
    before = pids(blocked)
    invite = Generator(1).invite("bridge", body, content_type)
    outcome = await send(blocked, invite, transport)
    assert outcome.final == 403, outcome.response
    assert b"not allowed" in outcome.reason
    assert outcome.final_s < ANSWER_WITHIN_S
    await alive_after(blocked, before)
    assert await blocked.store.list_calls() == []  # refused before pjsua made a call of it


async def test_a_stranger_gets_403_for_every_request_and_no_call_slot(blocked: Bridge) -> None:
    before = pids(blocked)
    generator = Generator(2)
    outcomes = [await send(blocked, generator.plain_invite()) for _ in range(6)]
    outcomes.append(await send(blocked, generator.request("OPTIONS", "bridge")))
    assert [o.final for o in outcomes] == [403] * 7
    await alive_after(blocked, before)


@pytest.fixture
async def bridge(tmp_path: Path, vllm_server: VllmServer) -> AsyncIterator[Bridge]:
    settings = sip_settings(transports=("udp", "tcp"), retry_after_s=7)
    # The INFO bodies' digits are checked as parsed: stored as keyed (redaction's default
    # masks them: test_sip_dtmf.py).
    keep = LegSettings(redaction=RedactionPolicy(dtmf=False))
    async with open_bridge(tmp_path, vllm_server, settings, leg_settings=keep) as bridge:
        yield bridge


def sdp_with(old: bytes, new: bytes) -> bytes:
    assert old in PLAIN_SDP
    return PLAIN_SDP.replace(old, new)


def siprec(name: str, change: Callable[[bytes], bytes] = lambda b: b) -> Message:
    message = Generator(3).siprec_invite(name)
    message.body = change(message.body)
    return message


# Each was left without a final answer, holding a call slot, by main before issue 12 (§2).
BAD_INVITES: list[tuple[str, Callable[[], Message], int, bytes]] = [
    (
        "superscript digit as payload type",
        lambda: Generator(4).invite(
            "bridge", sdp_with(b"rtpmap:0", "rtpmap:\u00b2".encode()), b"application/sdp"
        ),
        400,
        b"payload type",
    ),
    (
        "superscript digit in the clock rate",
        lambda: Generator(4).invite(
            "bridge", sdp_with(b"PCMU/8000", "PCMU/\u00b2000".encode()), b"application/sdp"
        ),
        400,
        b"rate",
    ),
    (
        "Arabic-Indic port",
        lambda: Generator(4).invite(
            "bridge",
            sdp_with(b"audio 40000", "audio \u0664\u0660\u0660".encode()),
            b"application/sdp",
        ),
        400,
        b"port",
    ),
    (
        "5,000-digit port",
        lambda: Generator(4).invite(
            "bridge", sdp_with(b"audio 40000", b"audio " + b"9" * 2000), b"application/sdp"
        ),
        400,
        b"port",
    ),
    (
        "NUL in the SDP",
        lambda: Generator(4).invite("bridge", sdp_with(b"s=-", b"s=-\x00"), b"application/sdp"),
        400,
        b"control character",
    ),
    (
        "300-byte c= address (docs/pjsua2.md P14)",
        lambda: Generator(4).invite(
            "bridge",
            sdp_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 127.0.0.1" + b"A" * 300),
            b"application/sdp",
        ),
        488,
        b"not an IP4 address",
    ),
    (
        "17 m-lines",
        lambda: Generator(4).invite(
            "bridge", PLAIN_SDP + b"m=audio 0 RTP/AVP 0\r\n" * 16, b"application/sdp"
        ),
        488,
        b"more than 16 media streams",
    ),
    (
        "Cisco CUBE offer as logged: no close delimiter",
        lambda: siprec("cisco-siprec-offer.txt"),
        400,
        b"close delimiter",
    ),
    (
        "SIPREC metadata that is not XML",
        lambda: siprec(
            "acme-siprec-offer.txt", lambda b: re.sub(rb"<recording[^>]*>", b"<recording", b)
        ),
        400,
        b"XML",
    ),
]


@pytest.mark.parametrize(
    ("make", "status", "words"), [c[1:] for c in BAD_INVITES], ids=[c[0] for c in BAD_INVITES]
)
async def test_a_bad_invite_gets_its_own_status_and_reason(
    bridge: Bridge, make: Callable[[], Message], status: int, words: bytes
) -> None:
    before = pids(bridge)
    outcome = await send(bridge, make())
    assert outcome.final == status, outcome.response
    assert words in outcome.reason, outcome.reason
    assert outcome.reason.isascii()
    assert outcome.final_s < ANSWER_WITHIN_S
    await alive_after(bridge, before)
    assert bridge.ingest.active_calls == 0  # no slot held


def late_offer_call(port: int, bad_answer: bytes, good_answer: bytes) -> list[bytes]:
    """An INVITE without SDP (the bridge offers in its 200, RFC 3264 §5), an ACK whose answer
    is ``bad_answer``, then, when the 200 comes again, an ACK with ``good_answer`` and a BYE.
    Returns the status lines received, in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(3.0)
        here = udp.getsockname()[1]

        def request(method: str, cseq: int, to: str, body: bytes = b"") -> bytes:
            kind = b"Content-Type: application/sdp\r\n" if body else b""
            return (
                (
                    f"{method} sip:bridge@127.0.0.1:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bK-late-{method}-{cseq}\r\n"
                    f"From: <sip:late@127.0.0.1>;tag=late\r\nTo: {to}\r\n"
                    f"Call-ID: late-offer@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
                    f"Contact: <sip:late@127.0.0.1:{here}>\r\nMax-Forwards: 70\r\n"
                ).encode()
                + kind
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

        def until_status(code: bytes) -> bytes:
            while True:
                data = udp.recv(65536)
                lines.append(data.split(b"\r\n", 1)[0])
                if data.startswith(b"SIP/2.0 " + code):
                    return data

        lines: list[bytes] = []
        udp.sendto(request("INVITE", 1, "<sip:bridge@127.0.0.1>"), ("127.0.0.1", port))
        ok = until_status(b"200")
        found = re.search(rb"\r\nTo: ([^\r]*)", ok)
        assert found is not None and b"v=0" in ok  # the bridge's offer
        to = found.group(1).decode()
        udp.sendto(request("ACK", 1, to, bad_answer), ("127.0.0.1", port))
        until_status(b"200")  # dropped, so pjsip sends its 200 again (RFC 3261 §13.3.1.4)
        udp.sendto(request("ACK", 1, to, good_answer), ("127.0.0.1", port))
        time.sleep(0.5)
        udp.sendto(request("BYE", 2, to), ("127.0.0.1", port))
        until_status(b"200")
        return lines


async def test_an_ack_whose_sdp_answer_pjmedia_would_abort_on_is_dropped(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """A 300-byte c= address in the answer of a late-offer ACK aborted the worker in pjlib
    (docs/pjsua2.md P14; no pjsua callback comes before pjmedia reads an answer)."""
    log = tmp_path / "workers.log"
    settings = sip_settings(transports=("udp", "tcp"))
    async with open_bridge(tmp_path, vllm_server, settings, worker_log=log) as bridge:
        before = pids(bridge)
        bad = sdp_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 127.0.0.1" + b"A" * 300)
        lines = await asyncio.to_thread(late_offer_call, bridge.settings.port, bad, PLAIN_SDP)
        assert lines.count(b"SIP/2.0 200 OK") >= 3, lines  # the 200 again, then the BYE's 200
        await alive_after(bridge, before)
        await until(lambda: bridge.ingest.active_calls == 0, 10, "the call ended")
    assert "call late-offer@127.0.0.1: ACK from" in log.read_text()
    assert "dropped, its SDP answer is unusable" in log.read_text()


@pytest.mark.parametrize(
    ("body", "status", "digit"),
    [
        (b"Signal=7", 200, "7"),  # pjsua's own reader aborted on this (docs/pjsua2.md P15)
        (b"Signal=10\r\nDuration=120", 200, "*"),  # an RFC 4733 event number, unterminated
        (b"Duration=160\r\n", 400, None),
    ],
)
async def test_info_dtmf_bodies_pjsua_would_abort_on_are_read_by_the_worker(
    bridge: Bridge, body: bytes, status: int, digit: str | None
) -> None:
    before = pids(bridge)
    generator = Generator(5)
    invite = generator.invite("bridge", PLAIN_SDP, b"application/sdp")
    headers = [(n, v) for n, v in invite.headers if n.lower() != "content-type"]
    info = Message("INFO", "@CONTACT@", headers, body)  # the raw UAC fills the dialog's @...@
    info.set("Content-Type", b"application/dtmf-relay")
    info.set("CSeq", b"@CSEQ@ INFO")
    info.set("To", b"@TO@")
    uac = RawUac("127.0.0.1", bridge.settings.port, answer_timeout_s=5.0)
    await uac.start()
    try:
        outcome = await uac.run(Case(invite, [], [info]), "udp")
    finally:
        await uac.close()
    assert outcome.final == 200 and outcome.in_dialog_finals == [status], outcome
    await alive_after(bridge, before)
    [call] = await bridge.calls(1)
    dtmf = [e.detail for e in call.events if e.kind == "dtmf"]
    assert dtmf == (
        [f"digit={digit} method=info duration_ms={120 if digit == '*' else 0}"] if digit else []
    )


async def test_a_latin1_participant_name_is_taken(bridge: Bridge) -> None:
    """One ISO-8859-1 byte in UTF-8 rs-metadata (a name with é): read, with U+FFFD for it."""
    latin1 = "Jos\xe9".encode("latin-1")
    invite = siprec(
        "acme-siprec-offer.txt",
        lambda b: re.sub(rb"(<name[^>]*>)[^<]*", lambda m: m.group(1) + latin1, b, count=1),
    )
    assert latin1 in invite.body
    uac = RawUac("127.0.0.1", bridge.settings.port)
    await uac.start()
    try:
        outcome = await uac.run(Case(invite, []), "udp")
    finally:
        await uac.close()
    assert outcome.final == 200, outcome.response
    [transcript] = await bridge.calls(1)
    metadata = next(e.detail for e in transcript.events if e.kind == "siprec.metadata")
    assert "Jos\ufffd" in metadata


async def test_full_is_503_with_retry_after_not_486(bridge: Bridge) -> None:
    """Issue 13 §3 / issue 12 §1: with all four pjsua slots taken the fifth INVITE gets our
    503 + Retry-After (pjsua's own answer would be 486 Busy Here, a busy tone for the caller);
    a valid SIPREC offer then too (it used to abort the worker)."""
    before = pids(bridge)
    uac = RawUac("127.0.0.1", bridge.settings.port, hold_calls=True)
    await uac.start()
    try:
        generator = Generator(5)
        held = [
            await uac.run(
                Case(generator.invite("bridge", PLAIN_SDP, b"application/sdp"), []), "udp"
            )
            for _ in range(4)
        ]
        assert [o.final for o in held] == [200] * 4
        await until(lambda: bridge.ingest.active_calls == 4, 10, "4 calls up")
        for invite in (
            generator.invite("bridge", PLAIN_SDP, b"application/sdp"),
            generator.siprec_invite("acme-siprec-offer.txt"),
        ):
            outcome = await uac.run(Case(invite, []), "udp")
            assert outcome.final == 503, outcome.response
            assert b"all call slots busy" in outcome.reason
            assert re.search(rb"\r\nRetry-After: *7\r\n", outcome.response), outcome.response
    finally:
        await uac.close()  # BYE for the four held calls
    await alive_after(bridge, before)
    records = await bridge.calls(4)
    assert sorted(t.call.end_cause for t in records) == ["bye-remote"] * 4


async def background(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


@pytest.fixture
async def fuzzed(tmp_path: Path, vllm_server: VllmServer) -> AsyncIterator[Bridge]:
    """(Its workers' stderr is ``tmp_path / "workers.log"``.)"""
    """A bridge whose ASR side takes 2 legs: the CPU vLLM server steps every leg the fuzzer
    opens, and dozens at once would leave it minutes behind.  INVITEs past that get 503 after
    their offer is read (so the parsers are still fuzzed); those that get in are fuzzed in
    their dialog."""
    # A fuzz call whose BYE was lost (its request broke the TCP stream it rode on) ends by
    # the RTP timeout: short here, so the test need not wait the default 30 s.
    settings = sip_settings(transports=("udp", "tcp"), rtp_timeout_s=5)
    endpoint = replace(endpoint_for(vllm_server), max_legs=2)
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        # The CPU server falls behind real time under the fuzzer's load: legs may take longer
        # than the default minute to get their last text.
        ingest = SipIngest(settings, store=store, endpoint=endpoint, finish_timeout_s=240)
        with stderr_to(tmp_path / "workers.log"):
            await ingest.start()
        try:
            yield Bridge(ingest, store, settings)
        finally:
            await ingest.close()


async def test_fuzzing_a_worker_never_kills_it_nor_the_call_on_it(
    fuzzed: Bridge, tmp_path: Path
) -> None:
    """The short CI run of the SIP fuzzer (benchmarks/fuzz_sip.py runs the long one): 2,000+
    hostile requests over UDP and TCP while a real call streams on the same worker."""
    bridge = fuzzed
    before = pids(bridge)
    long_ms = 25_000
    caller = await background(
        stream_scenario(
            bridge,
            tmp_path / "sipp",
            "PCMU",
            tone(long_ms / 1000),
            bye_after_ms=long_ms + 300,
            timeout_s=90,
        )
    )
    await until(lambda: bridge.ingest.active_calls == 1, 10, "the real call up")
    uac = RawUac("127.0.0.1", bridge.settings.port, answer_timeout_s=3.0)
    await uac.start()
    started = time.monotonic()
    try:
        report = await campaign(uac, seed=12, messages=2000, concurrency=16)
    finally:
        await uac.close()
    elapsed = time.monotonic() - started
    call = await caller  # 200, 25 s of RTP, BYE, 200: the sipp scenario checks each step
    assert call.returncode == 0 and call.final_status() == (200, "OK"), call.output
    summary = report.summary()
    assert report.sent >= 2000 and elapsed < 60, summary
    unanswered = [(o.case.mutations, o.case.message.encode()[:300]) for o in report.unanswered]
    assert unanswered == [], summary
    assert report.must_answer > 1000, summary  # most of them were answerable
    assert report.slowest_s < ANSWER_WITHIN_S + 1, summary
    await alive_after(bridge, before)
    # The worker's own log (its stderr): no callback of ours failed on any of it.
    worker_log = (tmp_path / "workers.log").read_text(errors="replace")
    assert "refused: 400 Bad Request" in worker_log  # it is the workers' log
    assert "Traceback" not in worker_log, worker_log[worker_log.find("Traceback") - 500 :][:3000]
    records = await bridge.calls(1, timeout_s=120)
    # Every fuzz call the bridge took (2xx) is stored, and ended (bridge.calls waits for that).
    stored = {
        m.group(1)
        for t in records
        for e in t.events
        if e.kind == "sip.call" and (m := re.search(r"call-id=(\S+)", e.detail))
    }
    taken = {(o.case.message.header("call-id") or b"").decode() for o in report.calls}
    assert taken - stored == set(), [
        (o.transport, o.case.mutations, o.response[:200])
        for o in report.calls
        if (o.case.message.header("call-id") or b"").decode() not in stored
    ]
    real = [t for t in records if any("sip:caller@" in leg.label for leg in t.legs)]
    assert len(real) == 1
    [transcript] = real
    assert transcript.call.end_cause == "bye-remote"
    [leg] = transcript.legs
    assert leg.duration_ms is not None and leg.duration_ms >= long_ms - 20
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]


def hostile_rtp(seed: int = 7) -> list[bytes]:
    """Well-formed PCMU RTP that would move the leg clock if it were taken (timestamp jumps,
    sequence wraps, new SSRCs, loud payloads), and datagrams that are not RTP at all."""
    rng = np.random.default_rng(seed)
    packets = []
    for n in range(150):
        seq = int(rng.integers(0, 1 << 16))
        timestamp = int(rng.choice([n * 160, 1 << 31, 0xFFFFFF00, int(rng.integers(0, 1 << 32))]))
        ssrc = int(rng.choice([0x1234, 0xDEADBEEF, int(rng.integers(0, 1 << 32))]))
        payload = bytes(rng.integers(0, 256, 160, dtype=np.uint8))
        packets.append(struct.pack("!BBHII", 0x80, 0, seq, timestamp, ssrc) + payload)
    packets += [bytes(rng.integers(0, 256, int(k), dtype=np.uint8)) for k in range(0, 300, 7)]
    return packets


async def test_rtp_from_other_addresses_is_dropped_and_counted(
    bridge: Bridge, tmp_path: Path
) -> None:
    """Issue 12 §5: RTP to an open call's port from anyone but its sender is not transcribed."""
    work = tmp_path / "sipp"
    caller = await background(
        stream_scenario(bridge, work, "PCMU", tone(STREAM_S), bye_after_ms=STREAM_S * 1000 + 300)
    )
    port = await answered_port(work)
    await asyncio.sleep(0.5)  # the caller's own RTP has latched the stream by now
    sent = 0
    for source in ("127.0.0.2", "127.0.0.1"):  # another host; this host from another port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind((source, 0))
            for datagram in hostile_rtp():
                other.sendto(datagram, ("127.0.0.1", port))
                sent += 1
                await asyncio.sleep(0.002)
    call = await caller
    assert call.returncode == 0 and call.final_status() == (200, "OK"), call.output
    [transcript] = await bridge.calls(1)
    [leg] = transcript.legs
    assert leg.duration_ms is not None and leg.ended_at_ms is not None
    wall_ms = leg.ended_at_ms - leg.started_at_ms
    assert STREAM_S * 1000 - 20 <= leg.duration_ms <= wall_ms + 20, (leg.duration_ms, wall_ms)
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]
    ended = next(e.detail for e in transcript.events if e.kind == "sip.ended")
    assert f"foreign_rtp={sent}" in ended, ended


STREAM_S = 4


async def test_four_sipp_calls_fill_a_worker_and_the_fifth_gets_503(
    bridge: Bridge, tmp_path: Path
) -> None:
    """Issue 13 §3 with sipp: four calls take the wheel's four slots; a PBX calling again gets
    503 + Retry-After (pjsua's own answer would be 486 Busy Here, a busy tone)."""
    four = await background(
        stream_scenario(
            bridge,
            tmp_path / "four",
            "PCMU",
            tone(STREAM_S),
            bye_after_ms=STREAM_S * 1000 + 300,
            calls=4,
            rate_cps=20,
        )
    )
    await until(lambda: bridge.ingest.active_calls == 4, 20, "four calls up")
    fifth = await asyncio.to_thread(
        run_scenario,
        tmp_path / "fifth",
        "uac_refused",
        bridge.target,
        fill={"BODY": PCMU_OFFER.replace("\n", "\r\n"), "EXPECT": "503"},
    )
    assert (await four).returncode == 0
    assert fifth.final_status() == (503, "Service Unavailable (all call slots busy)")
    assert "Retry-After: 7" in fifth.messages
    records = await bridge.calls(4)
    assert [t.call.end_cause for t in records] == ["bye-remote"] * 4
