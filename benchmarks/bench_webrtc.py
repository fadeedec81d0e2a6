"""WebRTC ingest benchmark: CPU and memory per WHIP leg, and spoken word -> live text delay.

Run by hand (not in tests), from the repository root::

    .venv/bin/python benchmarks/bench_webrtc.py [--peers 10] [--seconds 60] [--warmup-s 8]
        [--phases load,engine,vllm] [--latency-seconds 40] [--json FILE]

Processes (all on 127.0.0.1; each is stopped by PID before the script exits):

* **bridge**: this script with ``--role bridge``: the real HTTP app (``create_app`` through
  ``tests/http/served.py``: uvicorn, a real SQLite file, the WHIP routes, aiortc) whose ASR
  endpoint is the one under test.  aioice is limited to 127.0.0.1 as in the tests.
* **peers**: this script with ``--role peers``: N aiortc WHIP clients (``tests/webrtc/peer.py``:
  ICE, DTLS-SRTP, Opus at 48 kHz stereo) each sending flite speech in real time, 20 ms frames.
* **sink** (``benchmarks/sink.py``, phase ``load``) or a real speech server (phases ``engine``
  and ``vllm``).

Phase ``load`` (ASR = the sink, which answers like vLLM without doing ASR):

* ``cpu_pct_per_leg`` / ``cpu_us_per_frame``: user + system CPU of the bridge process
  (``/proc/PID/stat``) over a ``--seconds`` window once all N peers are connected and
  ``--warmup-s`` has passed, divided by N (and by the 20 ms frames in the window).  It covers
  everything a WebRTC leg costs in the bridge: ICE consent, SRTP decryption, RTCP, aiortc's
  jitter buffer and Opus decoding (48 kHz stereo), the frame copy, downmix, soxr resampling to
  16 kHz, 80 ms chunks, the realtime client's appends and the deltas back, SQLite.
* ``rss_per_session_kib``: (median RSS over the window - RSS before the N sessions) / N.  A
  warm-up session runs and ends first, so one-time costs (codec tables, imports) are not counted.
* ``realtime``: appends the sink got per connection in the window / (window / 80 ms): 1.0 when
  every leg keeps up with real time.

Phases ``engine`` and ``vllm`` (one peer; the delay a person sees):

* ``engine``: the embedded engine (``bridge asr-server``, faster-whisper base, in its own
  process) transcribes flite speech whose word spans are known.  For each spoken word that is
  recognised (same text, start within 1 s on the leg clock): delay from the handover to the
  encoder of the 20 ms frame holding the word's last sample to the live-API client's ``recv`` of
  the first segment revision (partial or final) that contains it; and to the final.
* ``vllm``: the real vLLM server on CPU (tiny Voxtral, scripted text:
  ``tests/integration/vllm_server.py``).  The text has no relation to the audio, so the "word
  time" is the step clock: step ``k`` needs ``9000 + 1280 k`` samples at 16 kHz, which the leg
  sends in the 80 ms chunk that ends at ``ceil((9000 + 1280 k) / 1280) * 1280``; the delay runs
  from the handover of the 20 ms frame holding that chunk's last sample to the live client's
  ``recv`` of the revision that first contains step ``k``'s character.  With the real model a
  step's text describes audio about 480 ms (the transcription delay, a server setting) before
  the samples the step needs, so a spoken word's text comes that much (plus up to 80 ms of
  chunking) later than this figure.

In both, revisions received after the peer's DELETE are left out: the DELETE's final commit
makes the server emit the rest at once, which says nothing about live delay.

``CLOCK_MONOTONIC`` is one clock for all processes of a Linux host, so times from the peers,
the live client and the bridge compare directly.  The load average (``os.getloadavg``) is
recorded before and after each phase: the machine is shared.

The last line printed is one JSON object with every figure (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "tests" / "integration", Path(__file__).resolve().parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bench_legs import start_sink, stop_sink  # noqa: E402

FRAME_MS = 20
STEP_SAMPLES = 1280
FIRST_STEP_SAMPLES = 9000
PASSAGE: list[str | float] = [
    1.0,
    "please check the status of my order",
    0.8,
    "the package was sent to the wrong address",
    0.8,
    "I would like a refund for the damaged item",
    0.8,
    "thank you for your help today",
    1.2,
]


# -- shared helpers ------------------------------------------------------------------------------


def loopback_ice() -> None:
    """aioice skips 127.0.0.1 (test-peers.md §4): use only it, in this process."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def passage(seconds: float | None = None) -> tuple[npt.NDArray[np.int16], list[Any]]:
    """The flite passage at 16 kHz (int16) and its words; tiled to ``seconds`` if given."""
    from tests.engine import speech

    said = speech.build(PASSAGE, by_word=True)
    pcm = (np.clip(said.audio, -1, 1) * 32767).astype(np.int16)
    if seconds is not None:
        pcm = np.tile(pcm, math.ceil(seconds * 16000 / len(pcm)))[: int(seconds * 16000)]
    return pcm, said.words


def to_48k(pcm16k: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    import soxr

    out: npt.NDArray[np.int16] = soxr.resample(pcm16k, 16000, 48000)
    return out


def stats_ms(values: list[float]) -> dict[str, float | int]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "min": round(float(a.min()), 1),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
    }


# -- role: bridge --------------------------------------------------------------------------------


async def run_bridge(args: argparse.Namespace) -> None:
    from bridge.asr.client import AsrEndpoint
    from bridge.webrtc.session import WhipSettings
    from tests.http.served import serve_bridge

    loopback_ice()
    endpoint = AsrEndpoint(
        url=args.asr_url, model=args.model, api_key=args.api_key, stall_timeout_s=30.0
    )
    whip = WhipSettings(
        loopback_only=True, max_sessions=args.max_sessions, connect_timeout_s=30, media_timeout_s=10
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_bridge(Path(args.db), endpoint=endpoint, whip=whip) as served:
        print(json.dumps({"base": served.base, "pid": os.getpid()}), flush=True)
        await stop.wait()


@contextlib.contextmanager
def bridge_process(
    work: Path, asr_url: str, model: str, api_key: str | None, max_sessions: int
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    command = [sys.executable, __file__, "--role", "bridge", "--asr-url", asr_url]
    command += ["--model", model, "--db", str(work / "bridge.db")]
    command += ["--max-sessions", str(max_sessions)]
    if api_key:
        command += ["--api-key", api_key]
    log = (work / "bridge.log").open("wb")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bridge exited early: {(work / 'bridge.log').read_text()[-2000:]}")
        yield proc, json.loads(line)["base"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


# -- role: peers ---------------------------------------------------------------------------------


class Peer:
    """One aiortc WHIP client sending ``pcm48k`` (mono, sent as stereo) in real time."""

    def __init__(self, base: str, pcm48k: npt.NDArray[np.int16]) -> None:
        from aiortc import RTCPeerConnection

        from tests.webrtc.peer import PcmTrack

        self.base = base
        self.pc = RTCPeerConnection()
        self.track = PcmTrack(pcm48k, rate_hz=48_000, channels=2)
        self.url: str | None = None
        self.call_id: str | None = None

    async def start(self, http: Any) -> None:
        from aiortc import RTCSessionDescription

        from tests.http.served import SUPERVISOR
        from tests.webrtc.peer import sendonly_offer

        offer = await sendonly_offer(self.pc, self.track, codec="opus")
        r = await http.post(
            self.base + "/api/v1/whip",
            content=offer,
            headers={"Authorization": f"Bearer {SUPERVISOR}", "Content-Type": "application/sdp"},
        )
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/v1/whip: {r.status_code} {r.text}")
        self.url, self.call_id = r.headers["location"], r.headers["bridge-call-id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

    async def connected(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pc.connectionState != "connected" or self.track.started_ns is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"peer not connected after {timeout_s} s")
            await asyncio.sleep(0.05)

    async def stop(self, http: Any) -> None:
        from tests.http.served import SUPERVISOR

        if self.url:
            await http.delete(
                self.base + self.url, headers={"Authorization": f"Bearer {SUPERVISOR}"}
            )
        await self.pc.close()


async def run_peers(args: argparse.Namespace) -> None:
    """Warm-up peer, then ``--count`` peers; driven over stdin (``go``, ``stop``)."""
    import httpx

    loopback_ice()
    pcm16k, _ = passage(args.audio_s)
    pcm48k = to_48k(pcm16k)
    stride = len(pcm48k) // max(1, args.count)

    async def line() -> str:
        return (await asyncio.to_thread(sys.stdin.readline)).strip()

    async with httpx.AsyncClient(timeout=60) as http:
        warm = Peer(args.base, pcm48k)
        await warm.start(http)
        await warm.connected()
        await asyncio.sleep(3.0)
        await warm.stop(http)
        print(json.dumps({"warm": True}), flush=True)
        assert await line() == "go"
        # Peer i starts at a different place of the passage: the legs do not speak in unison.
        peers = [Peer(args.base, np.roll(pcm48k, -i * stride)) for i in range(args.count)]
        for peer in peers:
            await peer.start(http)
            await asyncio.sleep(0.05)
        await asyncio.gather(*(peer.connected() for peer in peers))
        print(json.dumps({"ready": True, "calls": [p.call_id for p in peers]}), flush=True)
        cpu0 = time.process_time()
        assert await line() == "stop"
        cpu = time.process_time() - cpu0
        await asyncio.gather(*(peer.stop(http) for peer in peers))
    print(json.dumps({"stopped": True, "cpu_s": round(cpu, 3)}), flush=True)


# -- phase: load ----------------------------------------------------------------------------------


def phase_load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    load_before = loadavg()
    stats_path = work / "sink.json"
    total_s = args.warmup_s + args.seconds + 60
    sink, port = start_sink(stats_path, max_seconds=total_s + 300)
    sink_url = f"ws://127.0.0.1:{port}/v1/realtime"
    result: dict[str, Any] = {"peers": args.peers, "seconds": args.seconds}
    try:
        with bridge_process(work, sink_url, "sink", None, args.peers + 4) as (bridge, base):
            peers = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--role",
                    "peers",
                    "--base",
                    base,
                    "--count",
                    str(args.peers),
                    "--audio-s",
                    str(total_s),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(work / "peers.log").open("wb"),
                text=True,
            )
            try:
                assert peers.stdin is not None and peers.stdout is not None

                def read() -> dict[str, Any]:
                    assert peers.stdout is not None
                    text = peers.stdout.readline()
                    if not text:
                        tail = (work / "peers.log").read_text()[-2000:]
                        raise RuntimeError(f"peers process ended: {tail}")
                    value: dict[str, Any] = json.loads(text)
                    return value

                def send(word: str) -> None:
                    assert peers.stdin is not None
                    peers.stdin.write(word + "\n")
                    peers.stdin.flush()

                read()  # the warm-up session ran and ended
                time.sleep(2.0)
                rss_before = proc_rss_kib(bridge.pid)
                cpu_idle0, t_idle0 = proc_cpu_s(bridge.pid), time.monotonic()
                time.sleep(2.0)
                idle_pct = (proc_cpu_s(bridge.pid) - cpu_idle0) / (time.monotonic() - t_idle0)
                send("go")
                ready = read()
                time.sleep(args.warmup_s)
                peers_cpu0 = proc_cpu_s(peers.pid)
                cpu0, t0 = proc_cpu_s(bridge.pid), time.monotonic()
                t0_ns = time.monotonic_ns()
                rss: list[int] = []
                while time.monotonic() - t0 < args.seconds:
                    time.sleep(1.0)
                    rss.append(proc_rss_kib(bridge.pid))
                cpu1, t1 = proc_cpu_s(bridge.pid), time.monotonic()
                t1_ns = time.monotonic_ns()
                peers_cpu = proc_cpu_s(peers.pid) - peers_cpu0
                send("stop")
                read()
            finally:
                if peers.poll() is None:
                    with contextlib.suppress(Exception):
                        peers.wait(timeout=60)
                if peers.poll() is None:
                    peers.kill()
                    peers.wait(timeout=10)
        sink_stats = stop_sink(sink, stats_path)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait(timeout=10)
    window_s = t1 - t0
    cpu_s = cpu1 - cpu0
    frames = args.peers * window_s * 1000 / FRAME_MS
    per_leg_pct = cpu_s / window_s / args.peers * 100
    steady = int(np.median(rss))
    expected_appends = window_s * 1000 / 80
    conns = [c for c in sink_stats["connections"] if c["appends"] > 0]
    in_window = [sum(1 for t in c["recv_ns"] if t0_ns <= t < t1_ns) for c in conns]
    ratios = sorted(n / expected_appends for n in in_window if n)
    result.update(
        {
            "calls": len(ready.get("calls", [])),
            "window_s": round(window_s, 2),
            "bridge_cpu_s": round(cpu_s, 3),
            "bridge_cpu_pct": round(cpu_s / window_s * 100, 1),
            "bridge_idle_cpu_pct": round(idle_pct * 100, 2),
            "cpu_pct_per_leg": round(per_leg_pct, 2),
            "cpu_us_per_frame": round(cpu_s * 1e6 / frames, 1),
            "legs_per_core": round(100 / per_leg_pct, 1) if per_leg_pct > 0 else None,
            "rss_mib": {"before": round(rss_before / 1024, 1), "steady": round(steady / 1024, 1)},
            "rss_per_session_kib": round((steady - rss_before) / args.peers, 1),
            "realtime": {
                "legs_seen_by_sink": len(ratios),
                "min": round(ratios[0], 3) if ratios else None,
                "median": round(float(np.median(ratios)), 3) if ratios else None,
            },
            "peers_cpu_pct": round(peers_cpu / window_s * 100, 1),
            "sink_cpu_s": round(sink_stats["cpu_user_s"] + sink_stats["cpu_sys_s"], 2),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }
    )
    return result


# -- phases: engine and vllm (delay to the live API) ---------------------------------------------


@contextlib.asynccontextmanager
async def live_client(base: str, call_id: str) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    """Every segment event of ``call_id`` with the ``time.monotonic_ns()`` of its ``recv``."""
    from websockets.asyncio.client import connect

    from tests.http.served import SUPERVISOR

    url = base.replace("http", "ws", 1) + f"/api/v1/live?call={call_id}&token={SUPERVISOR}"
    events: list[tuple[int, dict[str, Any]]] = []
    async with connect(url, compression=None, max_size=None) as ws:

        async def reader() -> None:
            async for message in ws:
                now = time.monotonic_ns()
                data = json.loads(message)
                for event in data if isinstance(data, list) else [data]:
                    if str(event.get("type", "")).startswith("segment."):
                        events.append((now, event["segment"]))

        task = asyncio.create_task(reader())
        try:
            yield events
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9']+", "", text.lower())


async def one_peer_session(
    base: str, pcm16k: npt.NDArray[np.int16], tail_s: float
) -> tuple[Any, list[tuple[int, dict[str, Any]]], int]:
    """One aiortc peer sends ``pcm16k`` (as 48 kHz stereo Opus); the live client records.

    Returns the track, the live events, and when the peer started to stop (DELETE)."""
    import httpx

    peer = Peer(base, to_48k(pcm16k))
    async with httpx.AsyncClient(timeout=60) as http:
        await peer.start(http)
        assert peer.call_id is not None
        async with live_client(base, peer.call_id) as events:
            await peer.connected()
            track = peer.track
            assert track.started_ns is not None
            audio_s = len(track.pcm) / track.rate_hz
            await asyncio.sleep(audio_s - (time.monotonic_ns() - track.started_ns) / 1e9 + tail_s)
            stop_ns = time.monotonic_ns()
            await peer.stop(http)
            await asyncio.sleep(1.0)
    return peer.track, events, stop_ns


def sent_ns_at(track: Any, sample_16k: int) -> int:
    """When the 20 ms frame holding 16 kHz sample ``sample_16k`` went to the encoder."""
    frame = min(max(0, sample_16k) * 1000 // 16000 // FRAME_MS, len(track.sent_ns) - 1)
    value: int = track.sent_ns[frame]
    return value


def engine_delays(track: Any, words: list[Any], events: list[Any], stop_ns: int) -> dict[str, Any]:
    """Only revisions received before ``stop_ns`` count: the DELETE flushes the engine."""
    seen: dict[int, int] = {}
    final: dict[int, int] = {}
    for now, segment in events:
        if now >= stop_ns:
            continue
        for recognised in segment.get("words", []):
            for i, spoken in enumerate(words):
                if _norm(recognised["text"]) != _norm(spoken.text):
                    continue
                if abs(recognised["start_ms"] - spoken.start_ms) > 1000:
                    continue
                seen.setdefault(i, now)
                if segment.get("final"):
                    final.setdefault(i, now)
    to_seen, to_final = [], []
    for i, spoken in enumerate(words):
        end_ns = sent_ns_at(track, int(spoken.end_ms * 16) - 1)
        if i in seen:
            to_seen.append((seen[i] - end_ns) / 1e6)
        if i in final:
            to_final.append((final[i] - end_ns) / 1e6)
    text = " ".join(s["text"] for _, s in events if s.get("final"))
    return {
        "words_spoken": len(words),
        "words_recognised": len(seen),  # before the stop
        "words_final": len(final),
        "word_end_to_first_text_ms": stats_ms(to_seen),
        "word_end_to_final_ms": stats_ms(to_final),
        "final_text": text[:300],
    }


def vllm_delays(track: Any, events: list[Any], script: str, stop_ns: int) -> dict[str, Any]:
    """Characters received after ``stop_ns`` are left out: the DELETE's final commit makes the
    server run its right-padding steps at once, for audio that was never sent."""
    # The n-th non-space character of the leg's text was emitted by step steps[n].
    steps = [k for k in range(100_000) if script[k % len(script)] not in "| \t\n"][:5000]
    chars = [script[k % len(script)] for k in steps]
    finals: dict[int, str] = {}
    first: dict[int, int] = {}
    mismatch = 0
    for now, segment in events:
        seq = int(segment["seq"])
        text = "".join(segment["text"].split())
        if segment.get("final"):
            finals[seq] = text
        prefix = sum(len(t) for s, t in finals.items() if s < seq)
        for n in range(prefix, prefix + len(text)):
            if n not in first:
                if n < len(chars) and text[n - prefix] != chars[n]:
                    mismatch += 1
                first[n] = now
    delays = []
    for n, now in first.items():
        if n >= len(steps) or now >= stop_ns:
            continue
        need = FIRST_STEP_SAMPLES + STEP_SAMPLES * steps[n]
        chunk_end = math.ceil(need / STEP_SAMPLES) * STEP_SAMPLES
        delays.append((now - sent_ns_at(track, chunk_end - 1)) / 1e6)
    return {
        "characters": len(first),
        "characters_before_stop": len(delays),
        "mismatched_characters": mismatch,
        "step_audio_to_live_text_ms": stats_ms(delays),
    }


async def phase_latency(args: argparse.Namespace, work: Path, kind: str) -> dict[str, Any]:
    load_before = loadavg()
    if kind == "engine":
        from engine_server import EngineServer

        server: Any = EngineServer(work_dir=work)
    else:
        from vllm_server import VllmServer

        server = VllmServer(work_dir=work, max_model_len=2048)
    started = time.monotonic()
    await asyncio.to_thread(server.start)
    startup_s = time.monotonic() - started
    try:
        loopback_ice()
        with bridge_process(work, server.url, server.model, server.api_key, 4) as (_, base):
            if kind == "engine":
                pcm, words = passage()
                track, events, stop_ns = await one_peer_session(base, pcm, tail_s=6.0)
                figures = engine_delays(track, words, events, stop_ns)
            else:
                pcm, _ = passage(args.latency_seconds)
                track, events, stop_ns = await one_peer_session(base, pcm, tail_s=2.0)
                figures = vllm_delays(track, events, server.script, stop_ns)
    finally:
        await asyncio.to_thread(server.stop)
    return {
        "asr": kind,
        "server_start_s": round(startup_s, 1),
        "audio_s": round(len(pcm) / 16000, 1),
        **figures,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


# -- main ----------------------------------------------------------------------------------------


def summary(result: dict[str, Any]) -> str:
    lines = [f"uptime: {result['uptime']}"]
    load = result.get("load")
    if load:
        lines += [
            f"load: {load['peers']} aiortc peers (Opus 48 kHz stereo) -> WHIP -> bridge -> sink, "
            f"{load['window_s']} s window (load average {load['loadavg_before'][0]} -> "
            f"{load['loadavg_after'][0]})",
            f"  bridge CPU {load['bridge_cpu_pct']} % of a core (idle {load['bridge_idle_cpu_pct']}"
            f" %) = {load['cpu_pct_per_leg']} % per leg = {load['cpu_us_per_frame']} us per 20 ms "
            f"frame -> {load['legs_per_core']} legs per core",
            f"  RSS {load['rss_mib']['before']} -> {load['rss_mib']['steady']} MiB: "
            f"{load['rss_per_session_kib']} KiB per session",
            f"  real time (sink appends / expected): min {load['realtime']['min']}, median "
            f"{load['realtime']['median']} over {load['realtime']['legs_seen_by_sink']} legs",
            f"  peers process {load['peers_cpu_pct']} % of a core (Opus encoding, SRTP)",
        ]
    engine = result.get("engine")
    if engine:
        lines += [
            f"engine: {engine['words_recognised']}/{engine['words_spoken']} words recognised; "
            f"word end -> first live text {engine['word_end_to_first_text_ms']}, "
            f"-> final {engine['word_end_to_final_ms']} (ms)",
        ]
    vllm = result.get("vllm")
    if vllm:
        lines += [
            f"vllm: {vllm['characters']} scripted characters; step audio -> live text "
            f"{vllm['step_audio_to_live_text_ms']} (ms)",
        ]
    return "\n".join(lines)


async def run_latency_phases(args: argparse.Namespace, work: Path, phases: list[str]) -> Any:
    out = {}
    for kind in ("engine", "vllm"):
        if kind in phases:
            out[kind] = await phase_latency(args, work / kind, kind)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=10, help="concurrent WHIP legs (load)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (load)")
    parser.add_argument("--warmup-s", type=float, default=8.0, help="after all peers connect")
    parser.add_argument("--phases", default="load,engine,vllm")
    parser.add_argument("--latency-seconds", type=float, default=40.0, help="audio (vllm)")
    parser.add_argument("--json", help="also write the JSON result to this file")
    # Internal roles (the processes this script starts).
    parser.add_argument("--role", choices=["main", "bridge", "peers"], default="main")
    parser.add_argument("--asr-url")
    parser.add_argument("--model")
    parser.add_argument("--api-key")
    parser.add_argument("--db")
    parser.add_argument("--max-sessions", type=int, default=32)
    parser.add_argument("--base")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--audio-s", type=float, default=120.0)
    args = parser.parse_args()
    if args.role == "bridge":
        asyncio.run(run_bridge(args))
        return
    if args.role == "peers":
        asyncio.run(run_peers(args))
        return
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - {"load", "engine", "vllm"}
    if unknown or args.peers < 1 or not 0 < args.seconds <= 600:
        parser.error("--phases of load,engine,vllm; --peers >= 1; --seconds in (0, 600]")
    result: dict[str, Any] = {"bench": "webrtc", "cpus": os.cpu_count()}
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        work = Path(tmp)
        if "load" in phases:
            (work / "load").mkdir()
            result["load"] = phase_load(args, work / "load")
        for kind in ("engine", "vllm"):
            if kind in phases:
                (work / kind).mkdir()
        result.update(asyncio.run(run_latency_phases(args, work, phases)))
    print(summary(result))
    line = json.dumps(result)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)


if __name__ == "__main__":
    main()
