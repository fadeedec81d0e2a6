"""Kamailio in front of the SIP workers: calls through one address, spread, refused when full.

Every peer is real and started here on free 127.0.0.1 ports: Kamailio (Debian ``kamailio``,
``bridge.sip.dispatcher``), two ``bridge.sip.worker`` processes, sipp callers and the scripted
vLLM CPU server of ``conftest.py``.  Asserted on SQLite and on what sipp saw.  Set up with
``bash .ci/setup-sip.sh``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_sip import (
    BYE_AFTER_MS,
    STREAM_MS,
    Bridge,
    endpoint_for,
    open_bridge,
    sip_settings,
    tone,
    write_audio,
)
from vllm_server import VllmServer

from bridge.errors import TransportError
from bridge.sip.dispatcher import (
    Dispatcher,
    find_kamailio,
    kamailio_dispatcher,
    render_dispatcher_list,
    render_kamailio_cfg,
)
from bridge.sip.ingest import run_sip_ingest
from sip_config import SipSettings
from storage import CallTranscript, TranscriptStore
from tests.sip.sipp import SippResult, free_port, run_scenario

pytestmark = pytest.mark.integration

PCMU_OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.fixture(autouse=True)
def _needs_kamailio() -> None:
    find_kamailio()  # ConfigError naming the fix: bash .ci/setup-sip.sh


@contextlib.asynccontextmanager
async def dispatched(
    tmp_path: Path, server: VllmServer, **changes: object
) -> AsyncIterator[tuple[Bridge, Dispatcher]]:
    """Two workers (SipIngest) and Kamailio in front of them, started as the bridge does."""
    settings = sip_settings(workers=2, dispatcher_port=free_port(), **changes)
    assert settings.dispatcher_active
    async with (
        open_bridge(tmp_path, server, settings) as bridge,
        kamailio_dispatcher(settings, run_dir=tmp_path / "kamailio") as dispatcher,
    ):
        yield bridge, dispatcher


async def call_through(
    dispatcher: Dispatcher, work: Path, *, calls: int = 1, transport: str = "udp"
) -> SippResult:
    """``calls`` concurrent callers (10 per second) streaming ``STREAM_MS`` of a tone."""
    write_audio(work, "PCMU", tone(STREAM_MS / 1000))
    return await asyncio.to_thread(
        run_scenario,
        work,
        "uac_stream_proxied",
        f"127.0.0.1:{dispatcher.port}",
        fill={"FILE": "audio.raw", "PT": "0", "CODEC": "PCMU"},
        extra=["-d", str(BYE_AFTER_MS), "-t", "t1" if transport == "tcp" else "u1"],
        calls=calls,
        timeout_s=30,
    )


def worker_of(transcript: CallTranscript) -> int:
    [detail] = [e.detail for e in transcript.events if e.kind == "sip.call"]
    found = re.search(r"\bworker=(\d+)", detail)
    assert found, detail
    return int(found.group(1))


def came_through(transcript: CallTranscript, dispatcher: Dispatcher) -> bool:
    [detail] = [e.detail for e in transcript.events if e.kind == "sip.call"]
    return f"source=127.0.0.1:{dispatcher.port}" in detail


async def test_calls_spread_over_the_workers_and_the_callers_bye_passes_through(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """Four calls on one address: two per worker (call load), each a transcribed leg that the
    caller's BYE, routed back through Kamailio by its Record-Route, ends."""
    async with dispatched(tmp_path, vllm_server, max_calls_per_worker=2) as (bridge, dispatcher):
        result = await call_through(dispatcher, tmp_path / "sipp", calls=4)
        assert result.returncode == 0, result.output + result.errors
        transcripts = await bridge.calls(4)
    assert len(transcripts) == 4
    assert collections.Counter(worker_of(t) for t in transcripts) == {0: 2, 1: 2}
    for transcript in transcripts:
        assert came_through(transcript, dispatcher)
        assert transcript.call.end_cause == "bye-remote"  # the BYE reached the worker
        [leg] = transcript.legs
        assert leg.duration_ms is not None and leg.duration_ms >= STREAM_MS - 20
        assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]
    # The caller talked to the workers only through the proxy's route set.
    assert result.messages.count("Record-Route: <sip:127.0.0.1:") >= 4
    routes = re.findall(r"^Route: <sip:127\.0\.0\.1:(\d+);lr", result.messages, re.M)
    assert len(routes) >= 8 and set(routes) == {str(dispatcher.port)}  # each ACK and BYE
    answered = re.findall(r"by sip:bridge@127\.0\.0\.1:(\d+)", result.log)
    assert sorted(collections.Counter(answered).values()) == [2, 2]


async def test_when_every_worker_is_full_the_dispatcher_answers_503_with_retry_after(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """Both workers refuse (their own 503); Kamailio tries each, then answers 503 itself with
    the configured Retry-After (RFC 3261 §20.33)."""
    settings = {"max_calls_per_worker": 1, "retry_after_s": 9}
    async with dispatched(tmp_path, vllm_server, **settings) as (bridge, dispatcher):
        calls = asyncio.create_task(call_through(dispatcher, tmp_path / "two", calls=2))
        try:
            for _ in range(400):
                if bridge.ingest.active_calls == 2:
                    break
                await asyncio.sleep(0.05)
            assert bridge.ingest.active_calls == 2, "both workers hold a call"
            refused = await asyncio.to_thread(
                run_scenario,
                tmp_path / "third",
                "uac_refused",
                f"127.0.0.1:{dispatcher.port}",
                fill={"BODY": PCMU_OFFER, "EXPECT": "503"},
            )
        finally:
            result = await calls
        assert result.returncode == 0, result.output + result.errors
        transcripts = await bridge.calls(2)
    assert refused.returncode == 0, refused.output + refused.errors + refused.messages
    assert refused.final_status() == (503, "Service Unavailable (all call slots busy)")
    final = refused.messages.split("SIP/2.0 503")[-1].split("-----")[0]
    assert "Retry-After: 9" in final
    assert "Server: call-bridge dispatcher" in final  # Kamailio's own answer, not relayed
    assert len(transcripts) == 2  # the refused call never reached the store
    assert {worker_of(t) for t in transcripts} == {0, 1}


async def test_a_tcp_caller_reaches_the_udp_workers(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """TCP in, UDP to the worker: rr's double Record-Route keeps the dialog on both."""
    async with dispatched(tmp_path, vllm_server, transports=("udp", "tcp")) as (
        bridge,
        dispatcher,
    ):
        result = await call_through(dispatcher, tmp_path / "sipp", transport="tcp")
        assert result.returncode == 0, result.output + result.errors
        [transcript] = await bridge.calls(1)
    assert transcript.call.end_cause == "bye-remote"
    assert came_through(transcript, dispatcher)
    assert re.search(r"^Record-Route: .*transport=tcp", result.messages, re.M | re.I)


async def test_a_stopped_worker_is_skipped_until_it_answers_keepalives_again(
    tmp_path: Path, vllm_server: VllmServer, caplog: pytest.LogCaptureFixture
) -> None:
    """OPTIONS keepalives (ds_ping) find a worker that does not answer; calls go to the other
    one without waiting for it, and to both again once it answers."""
    caplog.set_level(logging.INFO, logger="bridge.sip.kamailio")

    async def logged(text: str, timeout_s: float) -> None:
        for _ in range(int(timeout_s / 0.1)):
            if any(text in r.getMessage() for r in caplog.records):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"kamailio did not log {text!r} within {timeout_s} s")

    async with dispatched(tmp_path, vllm_server, max_calls_per_worker=2) as (bridge, dispatcher):
        stopped = bridge.ingest.workers[1]
        assert stopped.process is not None
        port = bridge.settings.worker_port(1)
        os.kill(stopped.process.pid, signal.SIGSTOP)
        try:
            await logged(f"SIP worker sip:127.0.0.1:{port} is down", 30)
            result = await call_through(dispatcher, tmp_path / "one-worker", calls=2)
            assert result.returncode == 0, result.output + result.errors
        finally:
            os.kill(stopped.process.pid, signal.SIGCONT)
        await logged(f"SIP worker sip:127.0.0.1:{port} is up", 30)
        again = await call_through(dispatcher, tmp_path / "both", calls=2)
        assert again.returncode == 0, again.output + again.errors
        transcripts = await bridge.calls(4)
    by_start = sorted(transcripts, key=lambda t: t.call.started_at_ms)
    assert [worker_of(t) for t in by_start[:2]] == [0, 0]
    assert sorted(worker_of(t) for t in by_start[2:]) == [0, 1]
    assert all(t.call.end_cause == "bye-remote" for t in transcripts)
    # No INVITE waited for the stopped worker (a timeout would have logged it).
    assert not any("did not answer INVITE" in r.getMessage() for r in caplog.records)


async def test_a_disallowed_source_is_refused_by_the_dispatcher(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """The workers see every call come from Kamailio, so Kamailio checks allowed_sources."""
    nets = (ipaddress.ip_network("10.0.0.0/8"),)
    async with dispatched(tmp_path, vllm_server, allowed_sources=nets) as (bridge, dispatcher):
        refused = await asyncio.to_thread(
            run_scenario,
            tmp_path / "sipp",
            "uac_refused",
            f"127.0.0.1:{dispatcher.port}",
            fill={"BODY": PCMU_OFFER, "EXPECT": "403"},
        )
        assert refused.final_status() == (403, "Forbidden (source 127.0.0.1 not allowed)")
        assert await bridge.store.list_calls() == []


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    settings = SipSettings(workers=2, port=free_port(), dispatcher_port=free_port())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", settings.dispatcher_port))
        with pytest.raises(TransportError, match="exited with code") as info:
            async with kamailio_dispatcher(settings, run_dir=tmp_path):
                pass
    assert f"127.0.0.1:{settings.dispatcher_port}" in str(info.value)
    assert "bind" in str(info.value).lower()  # kamailio's own words are quoted


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"transports": ("udp", "tcp"), "host": "127.0.0.1", "public_address": "203.0.113.7"},
        {"transports": ("tcp",), "host": "::1", "allowed_sources": ("::1/128",)},
    ],
)
def test_rendered_configs_parse(tmp_path: Path, changes: dict[str, object]) -> None:
    """``kamailio -c`` accepts the rendered file (a syntax check; the tests above run it)."""
    if "allowed_sources" in changes:
        changes["allowed_sources"] = tuple(
            ipaddress.ip_network(n)
            for n in changes["allowed_sources"]  # type: ignore[attr-defined]
        )
    settings = SipSettings(workers=3, dispatcher_port=free_port(), **changes)  # type: ignore[arg-type]
    (tmp_path / "dispatcher.list").write_text(render_dispatcher_list(settings))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(render_kamailio_cfg(settings, list_path=str(tmp_path / "dispatcher.list")))
    check = subprocess.run(
        [find_kamailio(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "config file ok" in check.stdout + check.stderr


async def test_run_sip_ingest_starts_kamailio_in_front_of_several_workers(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """The path `bridge serve` takes: with 2 workers, run_sip_ingest starts Kamailio itself on
    dispatcher_port; a call there is answered by a worker, and stopping ends it all."""
    settings = sip_settings(workers=2, dispatcher_port=free_port())
    stop = asyncio.Event()
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        serving = asyncio.create_task(
            run_sip_ingest(settings, store=store, endpoint=endpoint_for(vllm_server), stop=stop)
        )
        try:
            front = Dispatcher("127.0.0.1", settings.dispatcher_port, 0, tmp_path)
            for _ in range(200):  # until Kamailio answers (workers first, then Kamailio)
                result = await call_through(front, tmp_path / "sipp")
                if result.returncode == 0:
                    break
                assert not serving.done(), serving
                await asyncio.sleep(0.2)
            assert result.returncode == 0, result.output + result.errors
            for _ in range(200):
                records = await store.list_calls()
                if records and not records[0].active:
                    break
                await asyncio.sleep(0.1)
            [record] = await store.list_calls()
            transcript = await store.get_call(record.call_id)
            assert transcript is not None and came_through(transcript, front)
            assert transcript.call.end_cause == "bye-remote"
        finally:
            stop.set()
            await asyncio.wait_for(serving, 60)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # Kamailio let go of it
        probe.bind(("127.0.0.1", settings.dispatcher_port))


async def test_the_bridges_own_bye_goes_back_through_the_dispatcher(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    """A worker-originated BYE (here: no RTP for rtp_timeout_s) takes the Record-Route through
    Kamailio, which lets it in as coming from a worker, and reaches the caller."""
    async with dispatched(tmp_path, vllm_server, rtp_timeout_s=2) as (bridge, dispatcher):
        work = tmp_path / "sipp"
        write_audio(work, "PCMU", tone(1.0))
        result = await asyncio.to_thread(
            run_scenario,
            work,
            "uac_stream_proxied_bye_rx",
            f"127.0.0.1:{dispatcher.port}",
            fill={"FILE": "audio.raw", "PT": "0", "CODEC": "PCMU"},
            timeout_s=30,
        )
        assert result.returncode == 0, result.output + result.errors
        [transcript] = await bridge.calls(1)
    assert came_through(transcript, dispatcher)
    assert transcript.call.end_cause == "rtp-timeout"
    bye = next(m for m in result.messages.split("-----") if "BYE sip:" in m)
    assert f"Via: SIP/2.0/UDP 127.0.0.1:{dispatcher.port}" in bye  # relayed by Kamailio
