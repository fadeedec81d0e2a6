"""Load benchmark of SIP ingest: N concurrent sipp calls into the pjsua2 workers, legs to a sink.

Run by hand (not in tests), from the repository root (needs ``bash .ci/setup-sip.sh``)::

    .venv/bin/python benchmarks/bench_sip.py [--calls 8] [--seconds 30] [--codec PCMU]

Set-up: ``ceil(calls / 4)`` worker processes (``bridge.ingest.SipIngest``, the real code), one
sipp caller per worker (no Kamailio yet: each sipp dials its worker's port directly), every call
streaming a ``--seconds`` G.711 tone then sending BYE.  The legs talk to ``benchmarks/sink.py``
(the realtime protocol without ASR) in a separate process.

Printed (one JSON object):

* ``cpu_pct_per_call``: (CPU of all workers + of this process) over the steady window, in % of one
  core, divided by the calls; ``worker_``/``main_cpu_pct_per_call`` split it;
* ``frames_dropped``: frames the workers could not hand over (socket full), from ``sip.ended``;
* ``samples_lost``: per leg, 16 kHz samples the leg stored as its duration minus the samples the
  sink received in appends (the leg's own clock vs what reached the ASR side), summed; must be 0;
* ``leg_ms_minus_audio_ms``: min/median/max of (leg duration - streamed audio) over the calls;
* ``worker_rss_mib``: resident memory per worker process.

Not measured yet: latency from RTP arrival to the append (needs a timestamp in the frame
messages), and Kamailio in front.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_legs import start_sink, stop_sink  # noqa: E402

from bridge.core.g711 import encode_alaw, encode_ulaw  # noqa: E402
from bridge.ingest import SipIngest  # noqa: E402
from bridge.io.asr_client import AsrEndpoint  # noqa: E402
from sip_config import SipSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402
from tests.sip.sipp import PAYLOAD_TYPES, free_port, free_port_block, run_scenario  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(match.group(1)) / 1024 if match else 0.0


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    workers = (args.calls + 3) // 4
    sink, sink_port = start_sink(work / "sink.json", args.seconds + 120)
    rtp = free_port_block(workers * 20)
    sip = SipSettings(
        port=free_port(),
        workers=workers,
        rtp_port_min=rtp,
        rtp_port_max=rtp + workers * 20 - 1,
        codecs=("PCMU", "PCMA"),
    )
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{sink_port}/v1/realtime", model="sink")
    t = np.arange(int(args.seconds * 8000)) / 8000
    pcm = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    encode = encode_ulaw if args.codec == "PCMU" else encode_alaw
    try:
        async with await TranscriptStore.open(work / "bench.db") as store:
            ingest = SipIngest(sip, store=store, endpoint=endpoint)
            await ingest.start()
            try:
                callers = []
                pool = ThreadPoolExecutor(max_workers=workers)  # one thread per sipp
                loop = asyncio.get_running_loop()
                for k in range(workers):
                    n = min(4, args.calls - 4 * k)
                    folder = work / f"sipp{k}"
                    folder.mkdir()
                    (folder / "audio.raw").write_bytes(encode(pcm))
                    callers.append(
                        loop.run_in_executor(
                            pool,
                            functools.partial(
                                run_scenario,
                                folder,
                                "uac_stream",
                                f"127.0.0.1:{sip.worker_port(k)}",
                                fill={
                                    "FILE": "audio.raw",
                                    "PT": str(PAYLOAD_TYPES[args.codec]),
                                    "CODEC": args.codec,
                                },
                                extra=["-d", str(int(args.seconds * 1000))],
                                timeout_s=args.seconds + 30,
                                calls=n,
                                rate_cps=20,
                            ),
                        )
                    )
                running = asyncio.gather(*callers)
                # Steady window: from when every call is up to 1 s before the first BYE.
                for _ in range(400):
                    if ingest.active_calls >= args.calls:
                        break
                    await asyncio.sleep(0.05)
                up = ingest.active_calls
                pids = [w.process.pid for w in ingest.workers if w.process is not None]
                window_s = max(1.0, args.seconds - 3.0)
                t0, main0 = time.monotonic(), self_cpu_s()
                work0 = sum(proc_cpu_s(p) for p in pids)
                await asyncio.sleep(window_s)
                elapsed = time.monotonic() - t0
                worker_cpu = sum(proc_cpu_s(p) for p in pids) - work0
                main_cpu = self_cpu_s() - main0
                rss = [proc_rss_mib(p) for p in pids]
                results = await running
                pool.shutdown()
                for _ in range(600):
                    if ingest.active_calls == 0:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await ingest.close()
            records = await store.list_calls(limit=10000)
            transcripts = [await store.get_call(r.call_id) for r in records]
    finally:
        sink_stats = stop_sink(sink, work / "sink.json")
    legs = [leg for t in transcripts if t is not None for leg in t.legs]
    dropped = 0
    for transcript in transcripts:
        for event in transcript.events if transcript else ():
            if event.kind == "sip.ended":
                match = re.search(r"frames_dropped=(\d+)", event.detail)
                dropped += int(match.group(1)) if match else 0
    sink_samples = sum(c["samples"] for c in sink_stats.get("connections", []))
    leg_samples = sum((leg.duration_ms or 0) * 16 for leg in legs)
    diffs = [(leg.duration_ms or 0) - int(args.seconds * 1000) for leg in legs]
    return {
        "calls": args.calls,
        "calls_up_at_once": up,
        "workers": workers,
        "seconds": args.seconds,
        "codec": args.codec,
        "sipp_ok": [r.returncode == 0 for r in results],
        "legs_stored": len(legs),
        "end_causes": sorted({t.call.end_cause or "" for t in transcripts if t}),
        "window_s": round(elapsed, 2),
        "cpu_pct_per_call": round(100 * (worker_cpu + main_cpu) / elapsed / max(up, 1), 3),
        "worker_cpu_pct_per_call": round(100 * worker_cpu / elapsed / max(up, 1), 3),
        "main_cpu_pct_per_call": round(100 * main_cpu / elapsed / max(up, 1), 3),
        "frames_dropped": dropped,
        "samples_lost": leg_samples - sink_samples,
        "leg_ms_minus_audio_ms": {
            "min": min(diffs, default=0),
            "median": statistics.median(diffs) if diffs else 0,
            "max": max(diffs, default=0),
        },
        "worker_rss_mib": [round(r, 1) for r in rss],
        "work_dir": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--codec", choices=sorted(PAYLOAD_TYPES), default="PCMU")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
