"""SIP ingest end to end: sipp calls -> pjsua2 worker processes -> legs -> the REAL vLLM server.

Every peer is real and started here on free 127.0.0.1 ports: sipp (Debian ``sip-tester``), the
``bridge.sip.worker`` processes (PyPI pjsua2 wheel) and the scripted vLLM CPU server of
``conftest.py``.  Everything is asserted on what lands in SQLite.  Set up with
``bash .ci/setup-sip.sh``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.core.g711 import encode_alaw, encode_ulaw
from bridge.core.types import LegRole, LegSource, Word
from bridge.errors import TransportError
from bridge.leg import LegSettings
from bridge.sip.ingest import SipIngest, run_sip_ingest
from sip_config import SipSettings
from storage import CallTranscript, TranscriptStore
from tests.sip import baresip
from tests.sip.sipp import (
    PAYLOAD_TYPES,
    SETUP_HINT,
    SIPP,
    SippResult,
    free_port,
    free_port_block,
    run_scenario,
)

pytestmark = pytest.mark.integration

RATE = 8000
# sipp's rtp_stream sends 20 ms packets of STREAM_MS of audio; the caller hangs up BYE_AFTER_MS
# after its ACK.  The margin lets the last packets through pjsua's jitter buffer (a BYE discards
# what it still holds: 60 ms seen on a loaded box), so every streamed sample is on the leg.
STREAM_MS = 3000
BYE_AFTER_MS = STREAM_MS + 300


def tone(seconds: float, freq: float = 440.0, dbfs: float = -20.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (10 ** (dbfs / 20) * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def sip_settings(**changes: object) -> SipSettings:
    port = free_port()
    rtp = free_port_block(32)
    settings = SipSettings(
        port=port, rtp_port_min=rtp, rtp_port_max=rtp + 31, codecs=("PCMU", "PCMA")
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


def endpoint_for(server: VllmServer) -> AsrEndpoint:
    return AsrEndpoint(
        url=server.url, model=server.model, api_key=server.api_key, stall_timeout_s=10
    )


@pytest.fixture(autouse=True)
def _needs_sipp() -> None:
    if not os.path.exists(SIPP):
        pytest.fail(f"sipp is missing: run {SETUP_HINT}")


class Bridge:
    def __init__(self, ingest: SipIngest, store: TranscriptStore, settings: SipSettings) -> None:
        self.ingest, self.store, self.settings = ingest, store, settings

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    async def calls(self, expect: int, timeout_s: float = 60.0) -> list[CallTranscript]:
        """The stored calls once ``expect`` of them have ended."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = await self.store.list_calls(limit=100_000)
            if len(records) >= expect and all(not r.active for r in records):
                out = [await self.store.get_call(r.call_id) for r in records]
                return [t for t in out if t is not None]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{expect} ended call(s) not stored within {timeout_s} s")


@contextlib.contextmanager
def stderr_to(path: Path | None) -> Iterator[None]:
    """Processes started inside write their stderr to ``path`` (the SIP workers' log, which
    pytest's capfd does not see: they inherit the fd 2 of the fixture's setup)."""
    if path is None:
        yield
        return
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.asynccontextmanager
async def open_bridge(
    tmp_path: Path,
    server: VllmServer,
    settings: SipSettings,
    *,
    worker_log: Path | None = None,
    leg_settings: LegSettings | None = None,
) -> AsyncIterator[Bridge]:
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        ingest = SipIngest(
            settings, store=store, endpoint=endpoint_for(server), leg_settings=leg_settings
        )
        with stderr_to(worker_log):
            await ingest.start()
        try:
            yield Bridge(ingest, store, settings)
        finally:
            await ingest.close()


@pytest.fixture
async def bridge(tmp_path: Path, vllm_server: VllmServer) -> AsyncIterator[Bridge]:
    async with open_bridge(tmp_path, vllm_server, sip_settings(transports=("udp", "tcp"))) as b:
        yield b


def write_audio(work: Path, codec: str, pcm: np.ndarray) -> None:
    """The raw G.711 file sipp's rtp_stream plays (test-peers.md §2: no header)."""
    encode = encode_ulaw if codec == "PCMU" else encode_alaw
    work.mkdir(parents=True, exist_ok=True)
    (work / "audio.raw").write_bytes(encode(pcm))


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout_s} s")


async def stream_scenario(
    bridge: Bridge,
    work: Path,
    codec: str,
    pcm: np.ndarray,
    *,
    bye_after_ms: int = BYE_AFTER_MS,
    transport: str = "udp",
    **options: Any,
) -> SippResult:
    """sipp calls the bridge and plays ``pcm`` as ``codec`` RTP, hangs up after
    ``bye_after_ms``; ``options``: run_scenario's (``calls``, ``rate_cps``, ``timeout_s``)."""
    write_audio(work, codec, pcm)
    return await asyncio.to_thread(
        run_scenario,
        work,
        "uac_stream",
        bridge.target,
        fill={"FILE": "audio.raw", "PT": str(PAYLOAD_TYPES[codec]), "CODEC": codec},
        extra=["-d", str(bye_after_ms), "-t", "t1" if transport == "tcp" else "u1"],
        **options,
    )


async def call_streaming(
    bridge: Bridge, work: Path, codec: str, pcm: np.ndarray, transport: str = "udp"
) -> None:
    result = await stream_scenario(bridge, work, codec, pcm, transport=transport)
    assert result.returncode == 0, result.output + result.errors
    assert result.final_status() == (200, "OK")


@pytest.mark.parametrize(
    ("codec", "transport"), [("PCMU", "udp"), ("PCMA", "udp"), ("PCMU", "tcp")]
)
async def test_direct_call_is_one_transcribed_leg(
    bridge: Bridge, tmp_path: Path, vllm_server: VllmServer, codec: str, transport: str
) -> None:
    pcm = tone(STREAM_MS / 1000)
    await call_streaming(bridge, tmp_path / "sipp", codec, pcm, transport)
    [transcript] = await bridge.calls(1)
    assert transcript.call.source is LegSource.SIP
    assert transcript.call.end_cause == "bye-remote"
    [leg] = transcript.legs
    assert (leg.source, leg.role, leg.codec) == (
        LegSource.SIP,
        LegRole.CALLER,
        f"{codec.lower()}/8000",
    )
    assert "sip:caller@127.0.0.1" in leg.label
    assert leg.duration_ms is not None and leg.ended_at_ms is not None
    # The leg clock counts every streamed sample, plus the tap's silence until the caller's BYE
    # (later on a loaded machine), and never more than the call's wall time.
    wall_ms = leg.ended_at_ms - leg.started_at_ms
    assert STREAM_MS - 20 <= leg.duration_ms <= wall_ms + 20, (leg.duration_ms, wall_ms)
    finals = [s for s in transcript.segments if s.final]
    assert [s.text for s in finals][:1] == ["hello world."]
    # The scripted server's step clock (test_pipeline.py): "hello" is steps 7..11.
    assert finals[0].words == (Word("hello", 560, 960), Word("world.", 1040, 1520))
    kinds = [e.kind for e in transcript.events]
    assert "sip.call" in kinds and "sip.ended" in kinds
    call_event = next(e for e in transcript.events if e.kind == "sip.call")
    assert "mode=direct" in call_event.detail


async def test_g722_call_is_tapped_at_16khz(tmp_path: Path, vllm_server: VllmServer) -> None:
    settings = sip_settings(codecs=("G722", "PCMU"))
    t = np.arange(3 * 16000) / 16000
    pcm = (3000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)  # above G.711's 4 kHz band
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        result = await asyncio.to_thread(baresip.call, tmp_path / "baresip", bridge.target, pcm)
        [transcript] = await bridge.calls(1)
    assert transcript.call.end_cause == "bye-remote", result.output
    [leg] = transcript.legs
    assert leg.codec == "g722/16000"
    assert leg.duration_ms is not None
    assert leg.ended_at_ms is not None
    assert 3000 - 20 <= leg.duration_ms <= leg.ended_at_ms - leg.started_at_ms + 20
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]


async def answered_port(work: Path) -> int:
    """The bridge's RTP port, once sipp (working in ``work``) has its 200 OK."""
    for _ in range(200):
        port = answered_rtp_port(work / "messages.log")
        if port:
            return port
        await asyncio.sleep(0.05)
    raise AssertionError("no 200 OK with the bridge's RTP port within 10 s")


def answered_rtp_port(messages_log: Path) -> int | None:
    """The bridge's RTP port from the 200 OK in sipp's message trace, once it is there."""
    text = messages_log.read_text(errors="replace") if messages_log.exists() else ""
    for message in text.split("-----"):
        found = re.search(r"^SIP/2\.0 200 OK.*?^m=audio (\d+)", message, re.M | re.S)
        if found:
            return int(found.group(1))
    return None


def garbage_rtp(seed: int = 5) -> list[bytes]:
    """Datagrams that are not this call's RTP: noise, bad versions, truncated headers, other
    payload types, oversized packets (issue 5, "Bad input")."""
    rng = np.random.default_rng(seed)
    out = [bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(0, 200, 40)]
    out += [b"\x80", b"\x80\x00\x00", b"\x40" + bytes(171), bytes(1500), b"\xff" * 9000]
    for seq in range(40):  # well-formed RTP, payload type 96 the offer never named
        out.append(struct.pack("!BBHII", 0x80, 96, seq, seq * 160, 0x1234) + bytes(160))
    return out


async def test_garbage_rtp_neither_crashes_nor_shifts_the_leg_clock(
    bridge: Bridge, tmp_path: Path
) -> None:
    work = tmp_path / "sipp"
    caller = asyncio.create_task(call_streaming(bridge, work, "PCMU", tone(STREAM_MS / 1000)))
    try:
        port = await answered_port(work)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for datagram in garbage_rtp():
                junk.sendto(datagram, ("127.0.0.1", port))
                await asyncio.sleep(0.01)
    finally:
        await caller  # the call itself succeeds: 200, stream, BYE, 200
    [transcript] = await bridge.calls(1)
    assert transcript.call.end_cause == "bye-remote"
    [leg] = transcript.legs
    assert leg.duration_ms is not None and leg.ended_at_ms is not None
    # The leg clock counts every streamed sample, plus the tap's silence until the caller's BYE
    # (later on a loaded machine), and never more than the call's wall time.
    wall_ms = leg.ended_at_ms - leg.started_at_ms
    assert STREAM_MS - 20 <= leg.duration_ms <= wall_ms + 20, (leg.duration_ms, wall_ms)
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]
    assert bridge.ingest.workers[0].restarts == 0


GSM_ONLY = """v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [media_port] RTP/AVP 3
a=rtpmap:3 GSM/8000
"""

MALFORMED = """v=0
o=caller 1 1 IN IP4 127.0.0.1
this line is not sdp
m=audio [media_port] RTP/AVP 0
"""

PCMU_OFFER = """v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""


async def refused(bridge: Bridge, work: Path, body: str, expect: int) -> tuple[int, str]:
    result = await asyncio.to_thread(
        run_scenario,
        work,
        "uac_refused",
        bridge.target,
        fill={"BODY": body.replace("\n", "\r\n"), "EXPECT": str(expect)},
    )
    status = result.final_status()
    assert result.returncode == 0, result.output + result.errors + result.messages
    assert status is not None
    return status


async def test_refusals_name_the_reason(bridge: Bridge, tmp_path: Path) -> None:
    # The worker's request screen answers these before pjsua sees the INVITE (pjsua's own
    # answers were a bare "Not Acceptable Here" and "Bad SDP"): the reason says what is wrong.
    assert await refused(bridge, tmp_path / "gsm", GSM_ONLY, 488) == (
        488,
        "Not Acceptable Here (no acceptable codec: offered GSM; the bridge takes PCMU, PCMA)",
    )
    status, reason = await refused(bridge, tmp_path / "bad", MALFORMED, 400)
    assert status == 400
    assert reason.startswith("Bad Request (malformed SDP: line 3 'this line is not sdp'"), reason
    assert await bridge.store.list_calls() == []


async def test_disallowed_source_gets_403(tmp_path: Path, vllm_server: VllmServer) -> None:
    settings = sip_settings(allowed_sources=(ipaddress.ip_network("10.0.0.0/8"),))
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        status, reason = await refused(bridge, tmp_path / "sipp", PCMU_OFFER, 403)
        assert (status, reason) == (403, "Forbidden (source 127.0.0.1 not allowed)")
        assert await bridge.store.list_calls() == []


async def test_a_full_worker_answers_503_with_retry_after(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    settings = sip_settings(max_calls_per_worker=1, retry_after_s=9)
    async with open_bridge(tmp_path, vllm_server, settings) as bridge:
        first = asyncio.create_task(
            call_streaming(bridge, tmp_path / "first", "PCMU", tone(STREAM_MS / 1000))
        )
        try:
            await until(lambda: bridge.ingest.active_calls == 1, 20, "the first call is up")
            work = tmp_path / "second"
            result = await asyncio.to_thread(
                run_scenario,
                work,
                "uac_refused",
                bridge.target,
                fill={"BODY": PCMU_OFFER.replace("\n", "\r\n"), "EXPECT": "503"},
            )
        finally:
            await first
        assert result.final_status() == (503, "Service Unavailable (all call slots busy)")
        assert "Retry-After: 9" in result.messages
        [transcript] = await bridge.calls(1)  # only the first call is stored
        assert transcript.call.end_cause == "bye-remote"


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    settings = sip_settings()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", settings.port))
        async with await TranscriptStore.open(tmp_path / "t.db") as store:
            endpoint = AsrEndpoint(url="ws://127.0.0.1:9/v1/realtime", model="unused")
            ingest = SipIngest(settings, store=store, endpoint=endpoint)
            with pytest.raises(TransportError) as info:
                await ingest.start()
    # One line with the cause and the fix (issue 13 §5), not pjsua's lines and "port taken?".
    message = str(info.value)
    assert message.startswith(f"SIP port 127.0.0.1:{settings.port} is taken by another program")
    assert "--sip-port" in message and "\n" not in message


async def test_a_host_not_on_this_machine_is_a_clear_error(tmp_path: Path) -> None:
    settings = sip_settings(host="192.0.2.1")  # TEST-NET-1: nobody's address
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        endpoint = AsrEndpoint(url="ws://127.0.0.1:9/v1/realtime", model="unused")
        ingest = SipIngest(settings, store=store, endpoint=endpoint)
        with pytest.raises(TransportError) as info:
            await ingest.start()
    message = str(info.value)
    assert message.startswith("SIP host 192.0.2.1 is not an address of this machine"), message
    assert "--sip-host" in message


async def test_stopping_hangs_up_and_keeps_the_finals(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    settings = sip_settings()
    work = tmp_path / "sipp"
    write_audio(work, "PCMU", tone(6.0))
    stop = asyncio.Event()
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        serving = asyncio.create_task(
            run_sip_ingest(settings, store=store, endpoint=endpoint_for(vllm_server), stop=stop)
        )
        # The bridge's BYE comes first, so sipp counts its call as failed: not asserted.
        caller = asyncio.create_task(
            asyncio.to_thread(
                run_scenario,
                work,
                "uac_stream",
                f"127.0.0.1:{settings.port}",
                fill={"FILE": "audio.raw", "PT": "0", "CODEC": "PCMU"},
                extra=["-d", "6000"],
                timeout_s=10,
            )
        )
        try:
            for _ in range(200):  # until the call is stored
                if await store.list_calls():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.wait_for(serving, 60)
        finally:
            stop.set()
            await caller
        [record] = await store.list_calls()
        transcript = await store.get_call(record.call_id)
    assert transcript is not None
    assert transcript.call.end_cause == "bridge-stopping"
    [leg] = transcript.legs
    assert leg.duration_ms is not None and 2000 <= leg.duration_ms <= 4000
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]


async def test_a_crashed_worker_closes_its_calls_and_comes_back(
    bridge: Bridge, tmp_path: Path
) -> None:
    work = tmp_path / "sipp"
    write_audio(work, "PCMU", tone(4.0))
    # The caller's BYE after 4 s reaches the restarted worker, which knows no such dialog (481):
    # sipp's verdict on this call does not matter.
    caller = asyncio.create_task(
        asyncio.to_thread(
            run_scenario,
            work,
            "uac_stream",
            bridge.target,
            fill={"FILE": "audio.raw", "PT": "0", "CODEC": "PCMU"},
            extra=["-d", "4000"],
            timeout_s=8,
        )
    )
    try:
        await until(lambda: bridge.ingest.active_calls == 1, 20, "the call is up")
        await asyncio.sleep(1.0)
        worker = bridge.ingest.workers[0]
        assert worker.process is not None
        old_pid = worker.process.pid
        os.kill(old_pid, signal.SIGKILL)
        [transcript] = await bridge.calls(1)
        assert transcript.call.end_cause == "worker-crashed"
        [leg] = transcript.legs
        assert leg.duration_ms is not None and 900 <= leg.duration_ms <= 2000
        assert [s.final for s in transcript.segments if s.text][:1] == [True]  # finals kept

        def restarted() -> bool:
            w = bridge.ingest.workers[0]
            return bool(w.process and w.process.pid != old_pid and w.ready and w.ready.done())

        await until(restarted, 30, "the worker restarted")
    finally:
        await caller
    # The restarted worker takes calls again.
    await call_streaming(bridge, tmp_path / "again", "PCMU", tone(1.0))
    calls = await bridge.calls(2)
    assert sorted(t.call.end_cause or "" for t in calls) == ["bye-remote", "worker-crashed"]
