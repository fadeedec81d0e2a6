"""Load benchmark of SIP ingest: N concurrent calls into the pjsua2 workers, legs to a sink.

Run by hand (not in tests), from the repository root (needs ``bash .ci/setup-sip.sh``)::

    .venv/bin/python benchmarks/bench_sip.py [--calls 40] [--seconds 150] [--calls-per-worker 4]
        [--via-kamailio | --direct] [--json FILE]

Set-up, every part the real code or a real peer, each in its own process:

* ``ceil(calls / calls-per-worker)`` worker processes (``bridge.sip.ingest.SipIngest``, this
  process is the bridge's main process: legs, SQLite);
* ``--via-kamailio`` (the default with more than one worker): Kamailio in front
  (``bridge.sip.dispatcher``), one sipp for all calls; ``--direct``: one sipp per worker,
  dialing its port;
* sipp does the signalling only (``benchmarks/uac_bench.xml``, 10 calls per second), and logs
  each answer's RTP port;
* the RTP sender (this script with ``--sender``, one process for all calls) streams G.711
  speech-like audio to each answer's port, paced at 20 ms (calls spread over the 20 ms), with a
  full-scale impulse as the last sample of some packets: packet 50 (start, once every call
  is settled), packets 52..59 (the call's index in binary, to tell the calls apart at
  the sink) and 61..68 (the same bits inverted, a check), then one every second (packet 99 +
  50 k).  It records the ``time.monotonic_ns()`` at which each impulse packet was sent;
* ``benchmarks/sink.py --markers`` (the realtime protocol without ASR) records when each append
  arrived and where in it the impulses are.

Printed (a summary, then one JSON object):

* ``latency_added_ms`` (p50/p99/max): for each 1 s marker, ``t_append_received - (t_sent +
  (chunk_end - marker_sample) / 16000)``: what the bridge adds beyond the unavoidable wait for
  the marker's 80 ms chunk to fill (the worker's RTP receive thread, the worker -> main
  process socket, resampling, the leg and its websocket, the sink's own wake-up; a leg's clock
  is anchored on whole 20 ms frames, so its chunks end where packets end).
  ``CLOCK_MONOTONIC`` is one clock for all processes of the host.  ``latency_steady_ms``: only
  markers sent inside the CPU window (every call up);
* ``cpu_pct_per_call``: CPU of the workers + the main process (+ Kamailio) over the steady window,
  in % of one core, divided by the calls; the parts separately (``*_cpu_pct``);
* ``frames_lost``: per call, the leg samples between the start impulse and the last marker
  compared with the RTP samples sent between them (x2 at 16 kHz), in 20 ms frames, summed
  (a lost frame counts +1, an inserted one -1; ``frames_slipped`` sums both as positive);
  ``markers_missing``: markers sent but not found at the sink; ``samples_lost``: leg duration
  minus samples the sink received; ``frames_dropped``: frames a worker could not hand over;
* ``rss_mib``: resident memory of the workers (also per call), of the main process (growth since
  before the workers started, per call) and of Kamailio (its processes share one memory pool,
  so their RSS sum over-counts);
* ``loadavg``: the machine's load average at the start, the window's start and its end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.core.g711 import encode_ulaw  # noqa: E402
from bridge.leg import LegSettings  # noqa: E402
from bridge.sip.dispatcher import kamailio_dispatcher  # noqa: E402
from bridge.sip.ingest import SipIngest  # noqa: E402
from sip_config import SipSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402
from tests.sip.sipp import SIPP, free_port, free_port_block  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SCENARIO = Path(__file__).resolve().parent / "uac_bench.xml"
SINK = Path(__file__).resolve().parent / "sink.py"

RATE = 8000
PACKET = 160  # 20 ms of G.711
PACKET_S = 0.02
OUT_PER_PACKET = 320  # 16 kHz samples per packet at the sink
START_PACKET = 50  # after 1 s of audio: pjsua's jitter buffer has settled by then
ID_PACKETS = range(52, 60)  # bit i of the call index -> an impulse in packet 52 + i
CHECK_PACKETS = range(61, 69)  # the same bits inverted: a slip inside the id shows
FIRST_MARKER, MARKER_EVERY = 99, 50  # packets: ~2 s, then every second
SPREAD_SLOTS = 10  # calls start their packets in 10 phases, 2 ms apart
IMPULSE = 32767  # µ-law's largest code (decodes to ±32124)
THRESHOLD = 20000  # the speech-like signal peaks at 9000
ALIGN_TOLERANCE = 3  # 16 kHz samples: an impulse this close to its slot is in place
RAMP_CPS = 10


# -- audio and the impulse plan (shared by the sender and the analysis) ---------------------------


def speech_like(seconds: float, seed: int = 7) -> np.ndarray:
    """8 kHz PCM16 that is loud and quiet like speech: voiced syllables (a 100-200 Hz pitch with
    harmonics to 3.5 kHz) at about 4 per second, pauses between words, a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 23) if k * 200 < 3500)
    syllables = np.abs(np.sin(2 * np.pi * 2.0 * t)) ** 1.5
    words = (np.sin(2 * np.pi * 0.35 * t + 1.0) > -0.4).astype(np.float64)  # ~30 % pauses
    x = voiced * syllables * words + 0.02 * rng.standard_normal(n)
    return (x / np.max(np.abs(x)) * 9000).astype(np.int16)


def impulse_packets(index: int, packets: int) -> list[int]:
    """The packets of call ``index`` whose last sample is an impulse.

    None in the stream's last packet: pjsua does not play out a stream's final frame (its
    jitter buffer still holds it when the packets stop; measured with a 5 s stream).
    """
    assert 0 <= index < 2 ** len(ID_PACKETS), "the call index must fit in the id bits"
    ids = [ID_PACKETS[i] for i in range(len(ID_PACKETS)) if index >> i & 1]
    checks = [CHECK_PACKETS[i] for i in range(len(CHECK_PACKETS)) if not index >> i & 1]
    markers = range(FIRST_MARKER, packets - 1, MARKER_EVERY)
    return [p for p in [START_PACKET, *ids, *checks, *markers] if p < packets - 1]


# -- the RTP sender (``--sender``, its own process) -------------------------------------------


def run_sender(plan_path: Path, out_path: Path) -> None:
    """Stream to every call once sipp logs its answer; write what was sent when."""
    plan = json.loads(plan_path.read_text())
    packets = int(plan["seconds"] / PACKET_S)
    audio = encode_ulaw(speech_like(plan["seconds"] + 1))
    impulse = encode_ulaw(np.array([IMPULSE], np.int16))
    socks: dict[int, socket.socket] = {}
    for call in plan["calls"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", call["port"]))
        s.setblocking(False)
        socks[call["index"]] = s
    print("ready", flush=True)
    logs = {Path(p): 0 for p in plan["logs"]}
    answered = re.compile(r"answered (\d+) (\d+) rtp (\d+)")
    heap: list[tuple[float, int]] = []  # (due time, call index)
    state: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + plan["seconds"] + plan["setup_s"]
    header = struct.Struct("!BBHII")
    late_ms: list[float] = []
    next_poll = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_poll:  # new answers in sipp's logs
            next_poll = now + PACKET_S
            for path, offset in logs.items():
                try:
                    with path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                except FileNotFoundError:
                    continue
                complete = chunk[: chunk.rfind(b"\n") + 1]
                logs[path] = offset + len(complete)
                for m in answered.finditer(complete.decode("ascii", "replace")):
                    index, port = int(m.group(1)), int(m.group(3))
                    if index in state:
                        continue
                    slot = (index % SPREAD_SLOTS) * PACKET_S / SPREAD_SLOTS
                    # 0.1 s after the answer: the worker has its tap on the call by then
                    start = math.ceil((now + 0.1 - slot) / PACKET_S) * PACKET_S + slot
                    state[index] = {
                        "dest": port,
                        "start": start,
                        "sent": 0,
                        "impulses": set(impulse_packets(index, packets)),
                        "impulse_ns": [],
                        "seq": random.getrandbits(16),
                        "ts": random.getrandbits(32),
                        "ssrc": random.getrandbits(32),
                    }
                    heapq.heappush(heap, (start, index))
            if len(state) == len(socks) and not heap:
                break
        if not heap:
            time.sleep(0.005)
            continue
        due, index = heap[0]
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, max(0.0, next_poll - time.monotonic()) + 0.0005))
            continue
        heapq.heappop(heap)
        call = state[index]
        i = call["sent"]
        payload = audio[i * PACKET : (i + 1) * PACKET]
        if i in call["impulses"]:
            payload = payload[:-1] + impulse
        packet = header.pack(
            0x80,
            0 | (0x80 if i == 0 else 0),  # PT 0 (PCMU); marker bit on the first packet
            (call["seq"] + i) & 0xFFFF,
            (call["ts"] + i * PACKET) & 0xFFFFFFFF,
            call["ssrc"],
        )
        late_ms.append((time.monotonic() - due) * 1000)
        sent_ns = time.monotonic_ns()
        with contextlib.suppress(BlockingIOError):
            socks[index].sendto(packet + payload, ("127.0.0.1", call["dest"]))
        if i in call["impulses"]:
            call["impulse_ns"].append([i, sent_ns])
        call["sent"] = i + 1
        if call["sent"] < packets:
            heapq.heappush(heap, (call["start"] + call["sent"] * PACKET_S, index))
    for s in socks.values():
        s.close()
    usage = os.times()
    out = {
        "calls": {
            str(k): {"dest": v["dest"], "sent": v["sent"], "impulses": v["impulse_ns"]}
            for k, v in state.items()
        },
        "late_ms": _percentiles(late_ms),
        "cpu_s": usage.user + usage.system,
    }
    out_path.write_text(json.dumps(out))


# -- measuring processes ----------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except FileNotFoundError:
        return 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
    }


# -- the run ----------------------------------------------------------------------------------


async def start_process(*command: str, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, stdin=subprocess.DEVNULL, **kwargs)


async def start_sink(stats: Path, *options: str) -> tuple[asyncio.subprocess.Process, int]:
    """``sink.py`` on a free port, its statistics to ``stats`` (``options``: more of its
    arguments): the process and the port it listens on."""
    sink = await start_process(
        sys.executable, str(SINK), "--port", "0", "--stats", str(stats), *options,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert sink.stdout is not None
    return sink, int(json.loads(await sink.stdout.readline())["port"])


def report(summary: dict[str, Any], path: Path | None) -> int:
    """A fuzzer's report: the JSON on stdout (and in ``path``); the exit status is 1 if it
    lists problems."""
    text = json.dumps(summary, indent=1)
    print(text)
    if path:
        path.write_text(text)
    return 1 if summary["problems"] else 0


async def stop_process(process: asyncio.subprocess.Process, timeout_s: float = 10) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    workers = math.ceil(args.calls / args.calls_per_worker)
    via_kamailio = args.via_kamailio if args.via_kamailio is not None else workers > 1
    setup_s = args.calls / RAMP_CPS + 30
    loadavg = [round(os.getloadavg()[0], 2)]
    sink, sink_port = await start_sink(
        work / "sink.json",
        "--max-seconds", str(args.seconds + setup_s + 300), "--markers", str(THRESHOLD),
    )  # fmt: skip
    rtp = free_port_block(workers * 20)
    sip = SipSettings(
        port=free_port(),
        workers=workers,
        max_calls_per_worker=args.calls_per_worker,
        rtp_port_min=rtp,
        rtp_port_max=rtp + workers * 20 - 1,
        codecs=("PCMU",),
        dispatcher="on" if via_kamailio else "off",
        dispatcher_port=free_port(),
    )
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{sink_port}/v1/realtime", model="sink")
    # One generation per leg: the sink's sample indices then count the whole call.
    legs = LegSettings(recycle_after_s=args.seconds + 3600)
    caller_ports = free_port_block(args.calls * 2)
    while caller_ports < rtp + workers * 20 and rtp < caller_ports + args.calls * 2:
        caller_ports = free_port_block(args.calls * 2)  # not yet bound, so pick apart
    calls = [{"index": c, "port": caller_ports + 2 * c} for c in range(args.calls)]
    groups: list[tuple[str, list[dict[str, int]]]] = []
    if via_kamailio:
        groups.append((f"127.0.0.1:{sip.dispatcher_port}", calls))
    else:
        per = args.calls_per_worker
        groups += [
            (f"127.0.0.1:{sip.worker_port(k)}", calls[k * per : (k + 1) * per])
            for k in range(workers)
        ]
    logs = [work / f"sipp{g}.log" for g in range(len(groups))]
    plan = {"calls": calls, "logs": [str(p) for p in logs], "seconds": args.seconds}
    plan["setup_s"] = setup_s
    (work / "plan.json").write_text(json.dumps(plan))
    result: dict[str, Any] = {}
    main_rss0 = proc_rss_mib(os.getpid())
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(await TranscriptStore.open(work / "bench.db"))
        ingest = SipIngest(sip, store=store, endpoint=endpoint, leg_settings=legs)
        await ingest.start()
        kamailio_pids: list[int] = []
        try:
            if via_kamailio:  # after the workers listen; stopped after them (their BYEs)
                dispatcher = await stack.enter_async_context(
                    kamailio_dispatcher(sip, run_dir=work / "kamailio")
                )
                kamailio_pids = [dispatcher.pid, *children_of(dispatcher.pid)]
        except BaseException:
            await ingest.close()
            raise
        stack.push_async_callback(ingest.close)
        sender = await start_process(
            sys.executable,
            __file__,
            "--sender",
            str(work / "plan.json"),
            str(work / "sender.json"),
            stdout=subprocess.PIPE,
        )
        assert sender.stdout is not None
        assert (await sender.stdout.readline()).strip() == b"ready"
        sipps = []
        for g, (target, group) in enumerate(groups):
            csv = work / f"calls{g}.csv"
            csv.write_text("SEQUENTIAL\n" + "".join(f"{c['index']};{c['port']}\n" for c in group))
            sipps.append(
                await start_process(
                    SIPP,
                    target,
                    "-sf",
                    str(SCENARIO),
                    "-inf",
                    str(csv),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(free_port()),
                    "-mi",
                    "127.0.0.1",
                    "-mp",
                    str(free_port_block(4)),
                    "-m",
                    str(len(group)),
                    "-l",
                    str(len(group)),
                    "-r",
                    str(RAMP_CPS),
                    "-d",
                    str(int((args.seconds + 2) * 1000)),
                    "-nostdin",
                    "-timeout",
                    f"{int(args.seconds + setup_s + 60)}s",
                    "-trace_logs",
                    "-log_file",
                    str(logs[g]),
                    "-trace_err",
                    "-error_file",
                    str(work / f"sipp{g}.err"),
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        t_first = time.monotonic()
        for _ in range(int(setup_s / 0.05)):
            if ingest.active_calls >= args.calls:
                break
            await asyncio.sleep(0.05)
        up = ingest.active_calls
        ramp_s = time.monotonic() - t_first
        # Steady window: every call up (+2 s), until 2 s before the first stream ends.
        await asyncio.sleep(2.0)
        window_s = max(5.0, args.seconds - ramp_s - 4.0)
        worker_pids = [w.process.pid for w in ingest.workers if w.process is not None]
        loadavg.append(round(os.getloadavg()[0], 2))
        t0, w_ns0 = time.monotonic(), time.monotonic_ns()
        main0 = self_cpu_s()
        work0 = sum(proc_cpu_s(p) for p in worker_pids)
        kam0 = sum(proc_cpu_s(p) for p in kamailio_pids)
        sink0 = proc_cpu_s(sink.pid)
        await asyncio.sleep(window_s / 2)
        rss_workers = [proc_rss_mib(p) for p in worker_pids]
        rss_main = proc_rss_mib(os.getpid())
        rss_kamailio = sum(proc_rss_mib(p) for p in kamailio_pids)
        await asyncio.sleep(window_s / 2)
        elapsed = time.monotonic() - t0
        w_ns1 = time.monotonic_ns()
        cpu = {
            "workers": sum(proc_cpu_s(p) for p in worker_pids) - work0,
            "main": self_cpu_s() - main0,
            "kamailio": sum(proc_cpu_s(p) for p in kamailio_pids) - kam0,
            "sink": proc_cpu_s(sink.pid) - sink0,
        }
        loadavg.append(round(os.getloadavg()[0], 2))
        sipp_codes = [await asyncio.wait_for(p.wait(), setup_s + 120) for p in sipps]
        await asyncio.wait_for(sender.wait(), 120)
        for _ in range(600):
            if ingest.active_calls == 0:
                break
            await asyncio.sleep(0.1)
        restarts = sum(w.restarts for w in ingest.workers)
    records = []
    async with await TranscriptStore.open(work / "bench.db") as store:
        for record in await store.list_calls(limit=10000):
            transcript = await store.get_call(record.call_id)
            if transcript is not None:
                records.append(transcript)
    await stop_process(sink)
    sink_stats = json.loads((work / "sink.json").read_text())
    sent = json.loads((work / "sender.json").read_text())
    analysis = analyse(sent, sink_stats, (w_ns0, w_ns1))
    stored_legs = [leg for t in records for leg in t.legs]
    dropped = 0
    for transcript in records:
        for event in transcript.events:
            if event.kind == "sip.ended":
                m = re.search(r"frames_dropped=(\d+)", event.detail)
                dropped += int(m.group(1)) if m else 0
    sink_samples = sum(c["samples"] for c in sink_stats["connections"])
    leg_samples = sum((leg.duration_ms or 0) * 16 for leg in stored_legs)
    n = max(up, 1)
    result = {
        "calls": args.calls,
        "calls_up_at_once": up,
        "workers": workers,
        "via_kamailio": via_kamailio,
        "seconds": args.seconds,
        "ramp_s": round(ramp_s, 1),
        "window_s": round(elapsed, 1),
        "sipp_exit_codes": sipp_codes,
        "legs_stored": len(stored_legs),
        "end_causes": sorted({t.call.end_cause or "" for t in records}),
        "worker_restarts": restarts,
        "cpu_pct_per_call": round(
            100 * (cpu["workers"] + cpu["main"] + cpu["kamailio"]) / elapsed / n, 3
        ),
        "workers_cpu_pct": round(100 * cpu["workers"] / elapsed, 2),
        "main_cpu_pct": round(100 * cpu["main"] / elapsed, 2),
        "kamailio_cpu_pct": round(100 * cpu["kamailio"] / elapsed, 2),
        "sink_cpu_pct": round(100 * cpu["sink"] / elapsed, 2),
        "sender_cpu_s": round(sent["cpu_s"], 1),
        "sender_late_ms": sent["late_ms"],
        **analysis,
        "frames_dropped": dropped,
        "samples_lost": leg_samples - sink_samples,
        "rss_mib": {
            "workers_total": round(sum(rss_workers), 1),
            "workers_per_call": round(sum(rss_workers) / n, 2),
            "worker_each": round(statistics.median(rss_workers), 1) if rss_workers else 0,
            "main_growth": round(rss_main - main_rss0, 1),
            "main_growth_per_call": round((rss_main - main_rss0) / n, 2),
            "kamailio_rss_sum": round(rss_kamailio, 1),
        },
        "loadavg": loadavg,
        "work_dir": str(work),
    }
    return result


def analyse(
    sent: dict[str, Any], sink_stats: dict[str, Any], window_ns: tuple[int, int]
) -> dict[str, Any]:
    """Match each sink connection to its call by the id impulses, then time every marker."""
    latency, steady = [], []
    lost = slipped = markers_missing = unmatched = 0  # lost, slipped: 16 kHz samples
    matched: set[str] = set()
    for conn in sink_stats["connections"]:
        peaks: list[list[int]] = []
        for peak in sorted(conn["markers"]):  # an impulse in two appends: keep the larger
            if peaks and peak[0] - peaks[-1][0] < 16:
                if peak[1] > peaks[-1][1]:
                    peaks[-1] = peak
                continue
            peaks.append(peak)
        if not peaks:
            unmatched += 1
            continue
        start = peaks[0][0]  # the start impulse, START_PACKET
        slots = {START_PACKET + round((p[0] - start) / OUT_PER_PACKET) for p in peaks}
        index = sum(1 << i for i, packet in enumerate(ID_PACKETS) if packet in slots)
        check = sum(1 << i for i, packet in enumerate(CHECK_PACKETS) if packet not in slots)
        call = sent["calls"].get(str(index))
        if call is None or str(index) in matched or check != index:
            # the start impulse was lost, or frames slipped inside the id: it cannot be read
            unmatched += 1
            continue
        matched.add(str(index))
        send_ns = {packet: ns for packet, ns in call["impulses"] if packet >= FIRST_MARKER}
        # Walk the markers in order.  Where a marker sits, counted in packets from the start
        # impulse, says which one it is; how far it is from that packet's place says how many
        # frames were lost (-) or inserted (+) before it (``shift``, in 16 kHz samples).
        shift, previous = 0, FIRST_MARKER - MARKER_EVERY
        for sample, _, chunk_end, recv_ns in peaks:
            offset = sample - start - shift  # from the start impulse
            if offset < (CHECK_PACKETS[-1] + 2 - START_PACKET) * OUT_PER_PACKET:
                continue  # the start and id impulses
            k = round((START_PACKET + offset / OUT_PER_PACKET - FIRST_MARKER) / MARKER_EVERY)
            packet = FIRST_MARKER + k * MARKER_EVERY
            if packet not in send_ns or packet <= previous:
                continue
            slip = offset - (packet - START_PACKET) * OUT_PER_PACKET
            if abs(slip) > ALIGN_TOLERANCE:  # not the resampler's sub-sample wobble
                slipped += abs(slip)
                lost -= slip
                shift += slip
            markers_missing += (packet - previous) // MARKER_EVERY - 1
            added_ms = (recv_ns - send_ns[packet]) / 1e6 - (chunk_end - sample) / 16.0
            latency.append(added_ms)
            if window_ns[0] <= send_ns[packet] <= window_ns[1]:
                steady.append(added_ms)
            previous = packet
        markers_missing += sum(1 for packet in send_ns if packet > previous)
    unheard = sum(1 for k in sent["calls"] if k not in matched)
    return {
        "latency_added_ms": _percentiles(latency),
        "latency_steady_ms": _percentiles(steady),
        "frames_lost": round(lost / OUT_PER_PACKET, 2),
        "frames_slipped": round(slipped / OUT_PER_PACKET, 2),
        "markers_missing": markers_missing,
        "calls_without_sink_match": unheard,
        "sink_connections_unmatched": unmatched,
    }


def summary(r: dict[str, Any]) -> str:
    lat, steady = r["latency_added_ms"], r["latency_steady_ms"]
    rss = r["rss_mib"]
    return "\n".join(
        [
            f"{r['calls']} calls ({r['calls_up_at_once']} up at once) on {r['workers']} "
            f"workers, {'through Kamailio' if r['via_kamailio'] else 'direct'}, "
            f"{r['seconds']:.0f} s each; window {r['window_s']} s; load {r['loadavg']}",
            f"  CPU per call {r['cpu_pct_per_call']} % of a core (workers {r['workers_cpu_pct']} "
            f"%, main {r['main_cpu_pct']} %, kamailio {r['kamailio_cpu_pct']} % in all)",
            f"  added latency p50 {lat.get('p50')} / p99 {lat.get('p99')} / max "
            f"{lat.get('max')} ms over {lat['n']} markers (steady window: p50 "
            f"{steady.get('p50')} / p99 {steady.get('p99')} ms)",
            f"  frames lost {r['frames_lost']}, slipped {r['frames_slipped']}, markers missing "
            f"{r['markers_missing']}, samples lost {r['samples_lost']}, frames dropped "
            f"{r['frames_dropped']}",
            f"  RSS: workers {rss['workers_per_call']} MiB per call ({rss['worker_each']} each), "
            f"main +{rss['main_growth_per_call']} MiB per call, kamailio {rss['kamailio_rss_sum']}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=150.0, help="audio per call")
    parser.add_argument("--calls-per-worker", type=int, default=4)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--via-kamailio", dest="via_kamailio", action="store_true", default=None)
    mode.add_argument("--direct", dest="via_kamailio", action="store_false")
    parser.add_argument("--json", type=Path, help="write the JSON result here too")
    parser.add_argument(
        "--sender", nargs=2, type=Path, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.sender:
        run_sender(*args.sender)
        return
    if not 1 <= args.calls < 2 ** len(ID_PACKETS):
        parser.error(f"--calls must be 1..{2 ** len(ID_PACKETS) - 1}")
    result = asyncio.run(run(args))
    print(summary(result))
    line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
