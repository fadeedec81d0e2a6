"""SIP modes and call lifecycle end to end: SIPREC sessions, the B2BUA tap, hold, CANCEL, BYE
from either side, RTP inactivity.

Real peers only, started here on free 127.0.0.1 ports: sipp (Debian ``sip-tester``) for the
signalling, the test's RTP peers (``tests/sip/rtp.py``) for the media of each dialog (SIPREC has
two streams, a B2BUA call audio both ways), the ``bridge.sip.worker`` processes, and the scripted
vLLM CPU server or the embedded engine (real words) from ``conftest.py``.  Asserted on SQLite:
legs and roles, words of each leg, events, end causes; and on the wire: what each side heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from engine_server import EngineServer
from test_sip import Bridge, endpoint_for, open_bridge, sip_settings, until
from vllm_server import VllmServer

from bridge.core.g711 import encode_ulaw
from bridge.core.types import LegRole
from bridge.leg import live_legs
from bridge.sip.ingest import SipIngest
from sip_config.routes import Route
from storage import CallTranscript, TranscriptStore
from tests.engine import speech
from tests.sip import baresip
from tests.sip.rtp import RtpPeer, sdp_ports
from tests.sip.sipp import SippResult, free_port, run_scenario

pytestmark = pytest.mark.integration

RATE = 8000


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.1 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def g722(pcm: np.ndarray) -> bytes:
    """8 kHz PCM16 as G.722 (FFmpeg's encoder, through PyAV), upsampled by repetition."""
    encoder = av.CodecContext.create("g722", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 16000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16")
    frame.sample_rate = 16000
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


def dominant_hz(pcm: np.ndarray) -> float:
    """The strongest frequency of ``pcm`` (8 kHz)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / RATE)[int(np.argmax(spectrum[1:])) + 1])


def ulaw_8k(text: str) -> bytes:
    """``text`` spoken by flite, 1 s of silence on each side, as 8 kHz µ-law."""
    audio = speech.build([1.0, text, 1.0]).audio
    pcm16 = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return encode_ulaw(pcm16[::2])  # flite has nothing above 4 kHz worth keeping here


@contextlib.asynccontextmanager
async def peers(count: int) -> AsyncIterator[list[RtpPeer]]:
    made = [RtpPeer() for _ in range(count)]
    try:
        yield made
    finally:
        for peer in made:
            peer.close()


async def ports_in(log: Path, first_line: str, timeout_s: float = 20.0) -> list[int]:
    """The m=audio ports of the first ``first_line`` message in a sipp trace, once it is there."""
    for _ in range(int(timeout_s / 0.02)):
        ports = sdp_ports(log, first_line)
        if ports:
            return ports
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {first_line!r} with m=audio in {log} within {timeout_s} s")


def start_sipp(work: Path, name: str, target: str, **kwargs: object) -> asyncio.Task[SippResult]:
    return asyncio.create_task(asyncio.to_thread(run_scenario, work, name, target, **kwargs))  # type: ignore[arg-type]


async def only_call(bridge: Bridge) -> CallTranscript:
    [transcript] = await bridge.calls(1)
    return transcript


def leg_text(transcript: CallTranscript, role: LegRole) -> str:
    [leg] = [leg for leg in transcript.legs if leg.role is role]
    return " ".join(s.text for s in transcript.segments if s.leg_id == leg.leg_id and s.final)


def event_details(transcript: CallTranscript, kind: str) -> list[str]:
    return [e.detail for e in transcript.events if e.kind == kind]


# -- SIPREC ------------------------------------------------------------------------------------


async def test_siprec_session_is_one_transcribed_leg_per_participant(
    tmp_path: Path, engine_server: EngineServer
) -> None:
    """RFC 7866: two labelled sendonly streams, metadata naming who speaks on each, a metadata
    snapshot in an UPDATE; real words from the embedded engine land on the right leg."""
    settings = sip_settings(agents=(("1001", "alice"),), codecs=("PCMU",))
    customer = ulaw_8k("my package never arrived")
    agent = ulaw_8k("I will send a replacement today")
    async with open_bridge(tmp_path, engine_server, settings) as bridge, peers(2) as (p1, p2):  # type: ignore[arg-type]
        work = tmp_path / "src"
        src = start_sipp(
            work,
            "siprec_src",
            bridge.target,
            fill={"PORT1": str(p1.port), "PORT2": str(p2.port), "PAUSE1": "2500", "PAUSE2": "3500"},
        )
        answer = await ports_in(work / "messages.log", "SIP/2.0 200 OK")
        assert len(answer) == 2 and 0 not in answer, answer  # both streams accepted (P5)
        p1.send(answer[0], customer)
        p2.send(answer[1], agent)
        result = await src
        assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    messages = result.messages
    assert "Supported:" in messages and "siprec" in messages.split("SIP/2.0 200 OK", 1)[1]
    assert "a=label:1" in messages and "a=label:2" in messages  # RFC 7866 §8.1.1 answer labels
    assert transcript.call.end_cause == "bye-remote"
    assert transcript.call.agent == "alice"  # the participant sip:1001@... per [sip.agents]
    legs = {leg.role: leg for leg in transcript.legs}
    assert set(legs) == {LegRole.CALLER, LegRole.AGENT}
    assert "Carol Customer" in legs[LegRole.CALLER].label
    assert "Alice Agent" in legs[LegRole.AGENT].label
    caller_text, agent_text = (leg_text(transcript, r) for r in (LegRole.CALLER, LegRole.AGENT))
    assert "package" in caller_text and "replacement" not in caller_text, caller_text
    assert "replacement" in agent_text and "package" not in agent_text, agent_text
    metadata = event_details(transcript, "siprec.metadata")
    assert len(metadata) == 2, metadata  # the INVITE's, then the UPDATE's snapshot
    assert "Carol Customer" in metadata[0] and "Bob Transfer" in metadata[1]
    [call_event] = event_details(transcript, "sip.call")
    assert "mode=siprec" in call_event and "streams=2" in call_event


SIPREC_HEADERS = "Require: siprec\r\nContent-Type: multipart/mixed;boundary=XYZ"
SIPREC_SDP = (
    "--XYZ\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=src 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=label:1\r\n"
    "a=sendonly\r\n"
)


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        # pjsua itself refuses an offer without SDP (and names what it accepts).
        (
            "--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XYZ--\r\n",
            (415, "Unsupported Media Type"),
        ),
        (
            SIPREC_SDP + "--XYZ\r\nContent-Type: application/rs-metadata+xml\r\n"
            "Content-Disposition: recording-session\r\n\r\n"
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><unclosed>\r\n--XYZ--\r\n",
            (400, "Bad Request (malformed SIPREC body: rs-metadata is not well-formed XML"),
        ),
        (
            SIPREC_SDP + "--XYZ\r\nContent-Type: application/rs-metadata+xml\r\n\r\n"
            # (an internal subset's brackets would be sipp keywords: an external DTD suffices)
            "<!DOCTYPE recording SYSTEM 'http://x/r.dtd'><recording/>\r\n--XYZ--\r\n",
            (400, "Bad Request (malformed SIPREC body: rs-metadata must not declare a DOCTYPE"),
        ),
    ],
)
async def test_a_malformed_siprec_offer_is_refused_with_its_reason(
    tmp_path: Path, vllm_server: VllmServer, body: str, expect: tuple[int, str]
) -> None:
    async with open_bridge(tmp_path, vllm_server, sip_settings()) as bridge:
        result = await asyncio.to_thread(
            run_scenario,
            tmp_path / "sipp",
            "uac_refused",
            bridge.target,
            fill={
                "BODY": body,
                "EXPECT": str(expect[0]),
                "HEADERS": SIPREC_HEADERS,
                "CONTACT_PARAMS": ";+sip.src",
            },
        )
        status = result.final_status()
        assert status is not None and status[0] == expect[0], result.messages
        assert status[1].startswith(expect[1]), status
        assert await bridge.store.list_calls() == []


# -- B2BUA -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def b2bua_bridge(tmp_path: Path, server: VllmServer) -> AsyncIterator[tuple[Bridge, int]]:
    """A bridge whose calls to ``tap-<ext>`` are dialled on to ``<ext>`` at a callee port."""
    callee_port = free_port()
    route = Route(mode="b2bua", user="tap-*", target=f"sip:{{ext}}@127.0.0.1:{callee_port}")
    settings = sip_settings(routes=(route,), agents=(("1001", "alice"),), codecs=("PCMU",))
    async with open_bridge(tmp_path, server, settings) as bridge:
        yield bridge, callee_port


async def test_b2bua_bridges_audio_both_ways_and_transcribes_both_legs(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    async with b2bua_bridge(tmp_path, vllm_server) as (bridge, callee_port), peers(2) as (a, b):
        callee = start_sipp(
            tmp_path / "b",
            "uas_answer",
            bridge.target,
            fill={"PORT": str(b.port)},
            sip_port=callee_port,
        )
        caller = start_sipp(
            tmp_path / "a",
            "uac_peer",
            bridge.target,
            fill={"PORT": str(a.port), "USER": "tap-1001"},
            extra=["-d", "4000"],
        )
        [to_a] = await ports_in(tmp_path / "a" / "messages.log", "SIP/2.0 200 OK")
        [to_b] = await ports_in(tmp_path / "b" / "messages.log", "INVITE")
        a.send(to_a, encode_ulaw(tone(3.5, 440)))
        b.send(to_b, encode_ulaw(tone(3.5, 1000)))
        results = await asyncio.gather(caller, callee)
        for result in results:
            assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    # Each side heard the other, through the bridge (pjsua2.md §2).
    assert abs(dominant_hz(a.received_pcm()[4000:]) - 1000) < 20
    assert abs(dominant_hz(b.received_pcm()[4000:]) - 440) < 20
    assert transcript.call.end_cause == "bye-caller"
    assert transcript.call.agent == "alice"
    legs = {leg.role: leg for leg in transcript.legs}
    assert set(legs) == {LegRole.CALLER, LegRole.AGENT}
    assert "sip:caller@127.0.0.1" in legs[LegRole.CALLER].label
    assert f"sip:1001@127.0.0.1:{callee_port}" in legs[LegRole.AGENT].label
    for role in legs:  # the scripted server's words, on each leg's own session
        assert leg_text(transcript, role).startswith("hello world."), role
    [call_event] = event_details(transcript, "sip.call")
    assert "mode=b2bua" in call_event and f"target=sip:1001@127.0.0.1:{callee_port}" in call_event


async def test_b2bua_callee_hangup_reaches_the_caller(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    async with b2bua_bridge(tmp_path, vllm_server) as (bridge, callee_port), peers(2) as (a, b):
        callee = start_sipp(
            tmp_path / "b",
            "uas_answer_bye",
            bridge.target,
            fill={"PORT": str(b.port)},
            sip_port=callee_port,
            extra=["-d", "2000"],
        )
        caller = start_sipp(
            tmp_path / "a",
            "uac_peer_bye_rx",
            bridge.target,
            fill={"PORT": str(a.port), "USER": "tap-1001"},
        )
        [to_a] = await ports_in(tmp_path / "a" / "messages.log", "SIP/2.0 200 OK")
        a.send(to_a, encode_ulaw(tone(1.5, 440)))
        for result in await asyncio.gather(caller, callee):
            assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    assert transcript.call.end_cause == "bye-agent"


async def test_b2bua_passes_the_callee_refusal_to_the_caller(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    async with b2bua_bridge(tmp_path, vllm_server) as (bridge, callee_port):
        callee = start_sipp(
            tmp_path / "b",
            "uas_refuse",
            bridge.target,
            fill={"STATUS": "486 Busy Here"},
            sip_port=callee_port,
        )
        caller = await asyncio.to_thread(
            run_scenario,
            tmp_path / "a",
            "uac_refused",
            bridge.target,
            fill={"BODY": PCMU_OFFER, "EXPECT": "486", "USER": "tap-1001"},
        )
        await callee
        transcript = await only_call(bridge)
    assert caller.final_status() == (486, "Busy Here"), caller.messages
    assert transcript.call.end_cause == "target-486"
    assert transcript.legs == ()


async def test_b2bua_cancel_while_ringing_reaches_the_callee(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    async with b2bua_bridge(tmp_path, vllm_server) as (bridge, callee_port), peers(1) as (a,):
        callee = start_sipp(
            tmp_path / "b", "uas_ring", bridge.target, fill={}, sip_port=callee_port
        )
        caller = start_sipp(
            tmp_path / "a",
            "uac_cancel",
            bridge.target,
            fill={"PORT": str(a.port), "USER": "tap-1001", "PAUSE": "1000"},
        )
        for result in await asyncio.gather(caller, callee):
            assert result.returncode == 0, result.output + result.errors + result.messages
        transcript = await only_call(bridge)
    assert transcript.call.end_cause == "cancel"
    assert transcript.legs == ()


async def test_b2bua_relays_the_callers_digits_to_the_callee(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """RFC 4733 digits from A are stored on the caller leg (masked) and sent on to B as RFC 4733
    events (the conference bridge carries audio only)."""
    async with b2bua_bridge(tmp_path, vllm_server) as (bridge, callee_port), peers(1) as (b,):
        callee = start_sipp(
            tmp_path / "b",
            "uas_answer",
            bridge.target,
            fill={"PORT": str(b.port)},
            sip_port=callee_port,
        )
        caller = await asyncio.to_thread(
            run_scenario,
            tmp_path / "a",
            "uac_dtmf_rfc4733",
            bridge.target,
            fill={"PCAPS": "/usr/share/sip-tester", "USER": "tap-1001"},
        )
        assert caller.returncode == 0, caller.output + caller.errors
        assert (await callee).returncode == 0
        transcript = await only_call(bridge)
    [caller_leg] = [leg for leg in transcript.legs if leg.role is LegRole.CALLER]
    # Stored as * (redaction's default: keyed digits are card numbers as often as not); the
    # callee still gets the real ones, below.
    stored = [e.detail.split()[0] for e in transcript.events if e.kind == "dtmf"]
    assert stored == ["digit=*"] * 4
    assert all(e.leg_id == caller_leg.leg_id for e in transcript.events if e.kind == "dtmf")
    # RFC 4733 §2.3: the event code is the payload's first byte; '#' is 11.
    events = [payload[0] for pt, payload in b.received if pt == 101 and payload]
    assert [code for n, code in enumerate(events) if n == 0 or events[n - 1] != code] == [
        1,
        2,
        3,
        11,
    ]


PCMU_OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


# -- lifecycle ---------------------------------------------------------------------------------


async def test_hold_feeds_the_leg_silence_and_resume_goes_on(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    async with open_bridge(tmp_path, vllm_server, sip_settings()) as bridge, peers(1) as (a,):
        caller = start_sipp(
            tmp_path / "a", "uac_hold", bridge.target, fill={"PORT": str(a.port), "PAUSE": "1500"}
        )
        [to_bridge] = await ports_in(tmp_path / "a" / "messages.log", "SIP/2.0 200 OK")
        a.send(to_bridge, encode_ulaw(tone(6.0, 440)))
        result = await caller
        assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    kinds = [e.kind for e in transcript.events if e.kind in ("sip.hold", "sip.resume")]
    assert kinds == ["sip.hold", "sip.resume"]
    [leg] = transcript.legs
    assert leg.duration_ms is not None and leg.ended_at_ms is not None
    # The hold's 1.5 s are on the leg clock too (silence), so the leg spans the whole call.
    assert 4500 - 100 <= leg.duration_ms <= leg.ended_at_ms - leg.started_at_ms + 20
    assert transcript.call.end_cause == "bye-remote"


async def test_a_codec_change_mid_call_goes_on_as_a_new_leg(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """RFC 3264 §8.3.2: a re-INVITE moves the stream from PCMU to G.722 (a PBX after a transfer
    to a wideband phone).  A leg's encoding and rate are fixed, so the first leg ends where the
    codec changed and a second one, on the same port, carries the rest; both are transcribed."""
    settings = sip_settings(codecs=("PCMU", "G722"))
    async with open_bridge(tmp_path, vllm_server, settings) as bridge, peers(1) as (a,):
        caller = start_sipp(
            tmp_path / "a",
            "uac_recodec",
            bridge.target,
            fill={"PORT": str(a.port), "PAUSE": "2500"},
        )
        [to_bridge] = await ports_in(tmp_path / "a" / "messages.log", "SIP/2.0 200 OK")
        a.send(to_bridge, encode_ulaw(tone(2.4, 440)))
        a.send(to_bridge, g722(tone(2.0, 440)), pt=9, delay_s=2.7)
        result = await caller
        assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    assert transcript.call.end_cause == "bye-remote"
    first, second = sorted(transcript.legs, key=lambda leg: leg.started_at_ms)
    assert (first.codec, second.codec) == ("pcmu/8000", "g722/16000")
    assert first.role is second.role is LegRole.CALLER
    assert second.started_at_ms - first.started_at_ms >= 2000  # at the re-INVITE
    assert second.duration_ms is not None and 1800 <= second.duration_ms <= 3000
    for leg in (first, second):  # the scripted server's words, on each leg's own session
        text = " ".join(s.text for s in transcript.segments if s.leg_id == leg.leg_id and s.final)
        assert text.startswith("hello world."), (leg.codec, text)


async def test_a_call_without_rtp_is_hung_up_by_the_bridge(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    settings = sip_settings(rtp_timeout_s=2)
    async with open_bridge(tmp_path, vllm_server, settings) as bridge, peers(1) as (a,):
        caller = start_sipp(
            tmp_path / "a", "uac_peer_bye_rx", bridge.target, fill={"PORT": str(a.port)}
        )
        [to_bridge] = await ports_in(tmp_path / "a" / "messages.log", "SIP/2.0 200 OK")
        a.send(to_bridge, encode_ulaw(tone(1.0, 440)))
        result = await caller  # it ends when the bridge's BYE comes
        assert result.returncode == 0, result.output + result.errors
        transcript = await only_call(bridge)
    assert transcript.call.end_cause == "rtp-timeout"
    [leg] = transcript.legs
    assert leg.duration_ms is not None and leg.duration_ms >= 2500


async def test_no_asr_capacity_is_503_with_retry_after(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """design.md §4: refuse new calls (503 + Retry-After) before the ASR side saturates; here
    the ASR server takes one leg, and the first call holds it."""
    settings = sip_settings(retry_after_s=4)
    endpoint = replace(endpoint_for(vllm_server), max_legs=1)
    async with await TranscriptStore.open(tmp_path / "t.db") as store, peers(1) as (a,):
        ingest = SipIngest(settings, store=store, endpoint=endpoint)
        await ingest.start()
        try:
            bridge = Bridge(ingest, store, settings)
            first = start_sipp(
                tmp_path / "first",
                "uac_peer",
                bridge.target,
                fill={"PORT": str(a.port)},
                extra=["-d", "3000"],
            )
            [to_bridge] = await ports_in(tmp_path / "first" / "messages.log", "SIP/2.0 200 OK")
            a.send(to_bridge, encode_ulaw(tone(2.5, 440)))
            await until(lambda: len(live_legs()) == 1, 10, "the first call's leg is live")
            await asyncio.sleep(0.5)  # the workers hear of it (ADMISSION_CHECK_S)
            second = await asyncio.to_thread(
                run_scenario,
                tmp_path / "second",
                "uac_refused",
                bridge.target,
                fill={"BODY": PCMU_OFFER, "EXPECT": "503"},
            )
            assert (await first).returncode == 0
            assert second.final_status() == (
                503,
                "Service Unavailable (transcription capacity full)",
            ), second.messages
            assert "Retry-After: 4" in second.messages
            [transcript] = await bridge.calls(1)  # only the first call is stored
            assert transcript.call.end_cause == "bye-remote"
        finally:
            await ingest.close()


# -- accounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "outcome"), [("s3cret", "registered"), ("wrong", "refused")])
async def test_a_registered_extension_authenticates_with_the_pbx(
    tmp_path: Path, vllm_server: VllmServer, password: str, outcome: str
) -> None:
    """RFC 3261 §10 + §22: the bridge registers as extension 1001 of a PBX (sipp as registrar,
    checking the digest), then takes calls like any trunk target."""
    pbx_port = free_port()
    pbx = start_sipp(
        tmp_path / "pbx",
        "registrar",
        f"127.0.0.1:{pbx_port}",
        fill={"USER": "1001", "PASSWORD": "s3cret"},
        sip_port=pbx_port,
        timeout_s=20,
    )
    settings = sip_settings(
        registrar=f"sip:127.0.0.1:{pbx_port}", auth_user="1001", auth_password=password
    )
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        result = await pbx
        assert result.returncode == 0, result.output + result.errors
        assert outcome in result.log
        registers = [m for m in result.messages.split("-----") if "REGISTER sip:" in m]
        assert len(registers) == 2, result.messages
        assert "Authorization: Digest" in registers[1] and 'username="1001"' in registers[1]
        assert "sip:1001@127.0.0.1" in registers[1]  # registered as the extension (To/From)
        if outcome == "registered":
            pcm = tone(1.0, 440)
            with (tmp_path / "audio.raw").open("wb") as f:
                f.write(encode_ulaw(pcm))
            call = await asyncio.to_thread(
                run_scenario,
                tmp_path / "call",
                "uac_stream",
                bridge.target,
                fill={"FILE": str(tmp_path / "audio.raw"), "PT": "0", "CODEC": "PCMU"},
                extra=["-d", "1000"],
            )
            assert call.final_status() == (200, "OK"), call.messages
            assert (await only_call(bridge)).call.end_cause == "bye-remote"


# -- transports --------------------------------------------------------------------------------


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM), made here: nothing secret is committed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_a_call_over_tls_is_transcribed(tmp_path: Path, vllm_server: VllmServer) -> None:
    """RFC 3261 §26.2: the worker listens for SIP over TLS on its own port with the configured
    certificate; baresip dials there, checking that certificate, and the call is a leg."""
    cert, key = self_signed_cert(tmp_path / "tls")
    tls_port = free_port(socket.SOCK_STREAM)
    settings = sip_settings(
        transports=("udp", "tls"),
        tls_port=tls_port,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        codecs=("PCMU",),
    )
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        pcm = tone(3.0, 440).astype(np.int16)
        result = await asyncio.to_thread(
            baresip.call,
            tmp_path / "baresip",
            f"127.0.0.1:{tls_port}",
            pcm,
            codec="PCMU",
            rate_hz=RATE,
            tls_cafile=cert,
        )
        transcript = await only_call(bridge)
    assert f"sip:bridge@127.0.0.1:{tls_port};transport=tls terminated" in result.output
    assert transcript.call.end_cause == "bye-remote"
    [leg] = transcript.legs
    assert leg.codec == "pcmu/8000"
    assert leg_text(transcript, LegRole.CALLER).startswith("hello world.")
