"""Load benchmark of the media forks: N concurrent calls (both legs) into one adapter.

Run by hand from the repository root (not in tests)::

    .venv/bin/python benchmarks/bench_forks.py --adapter audiosocket [--calls 100]
        [--seconds 40] [--json FILE]

Set-up, each part in its own process: this process is the bridge (the adapter's listener,
:class:`bridge.ingest.fork.ForkCalls`, SQLite), ``benchmarks/sink.py --markers`` stands in for
the ASR server, and a sender process (this script with ``--sender``) plays the PBX: for
``audiosocket`` two TCP sockets per call (one per side, ``pair_by = suffix``), for
``freeswitch`` one stereo 8 kHz WebSocket per call (mod_audio_stream's framing).  Every side
sends speech-like 8 kHz audio in 20 ms messages on an absolute schedule, with full-scale impulses
as the last sample of some frames (the start, the leg's index in binary, then one a second: the
plan of ``bench_sip.py``), and records when it sent each impulse frame.

Printed (a summary, then one JSON object): ``cpu_pct_per_call`` (this process's CPU over the
steady window, every call up, divided by the calls: both legs of a call), ``latency_added_ms``
(p50/p99/max over the 1 s markers: the sink's receive time minus the frame's send time, less the
wait for the marker's 80 ms chunk to fill: the socket hop, the adapter, resampling, the leg and
its websocket), ``frames_lost``/``frames_slipped``/``markers_missing``, RSS growth per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sip import (  # noqa: E402
    ID_PACKETS,
    IMPULSE,
    SINK,
    THRESHOLD,
    _percentiles,
    analyse,
    impulse_packets,
    self_cpu_s,
    speech_like,
    start_process,
    stop_process,
)

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.config.ingest import AudioSocketConfig, ForkSocketConfig  # noqa: E402
from bridge.core.forks.audiosocket import Kind, frame  # noqa: E402
from bridge.ingest.audiosocket import AudioSocketServer  # noqa: E402
from bridge.ingest.fork import ForkCalls  # noqa: E402
from bridge.ingest.websocket import ForkSocketServer, fork_protocols  # noqa: E402
from bridge.leg import LegSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402

ADAPTERS = ("audiosocket", "freeswitch")
FRAME_S = 0.02
SAMPLES = 160  # 20 ms at 8 kHz
SECRET = "bench"


# -- the sender (``--sender``, its own process) -------------------------------------------------


def leg_audio(index: int, seconds: float) -> np.ndarray:
    """The leg's PCM16 with its impulses: last sample of each impulse frame."""
    audio = speech_like(seconds + 1).copy()
    frames = len(audio) // SAMPLES
    for packet in impulse_packets(index, frames):
        audio[(packet + 1) * SAMPLES - 1] = IMPULSE
    return audio


async def send_paced(
    send: Any, frames: list[bytes], impulses: dict[int, set[int]], start: float, out: dict
) -> None:
    """Send one message per 20 ms from ``start``; record the send time of impulse frames."""
    late = out.setdefault("late_ms", [])
    for i, message in enumerate(frames):
        due = start + i * FRAME_S
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        late.append((time.monotonic() - due) * 1000)
        sent_ns = time.monotonic_ns()
        await send(message)
        for leg, packets in impulses.items():
            if i in packets:
                out["calls"][str(leg)]["impulses"].append([i, sent_ns])


async def sender(plan: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": {}}
    calls, seconds, adapter = plan["calls"], plan["seconds"], plan["adapter"]
    audio = {leg: leg_audio(leg, seconds) for leg in range(2 * calls)}
    n = int(seconds / FRAME_S)
    for leg in audio:
        out["calls"][str(leg)] = {"impulses": [], "sent": n}
    t0 = time.monotonic() + 2.0
    tasks = []
    closers: list[Any] = []
    if adapter == "audiosocket":
        import uuid

        for leg in range(2 * calls):
            uid = uuid.UUID(f"{leg // 2:031x}{leg % 2}")
            _, writer = await asyncio.open_connection("127.0.0.1", plan["port"])
            writer.write(frame(Kind.UUID, uid.bytes))
            pcm = audio[leg].astype("<i2").tobytes()
            frames = [frame(Kind.AUDIO_SLIN, pcm[i * 320 : (i + 1) * 320]) for i in range(n)]

            async def send(message: bytes, writer: asyncio.StreamWriter = writer) -> None:
                writer.write(message)

            async def hangup(writer: asyncio.StreamWriter = writer) -> None:
                writer.write(frame(Kind.HANGUP))
                await writer.drain()
                writer.close()

            closers.append(hangup)
            impulses = {leg: set(impulse_packets(leg, n))}
            start = t0 + (leg % 10) * FRAME_S / 10
            tasks.append(send_paced(send, frames, impulses, start, out))
    else:
        from websockets.asyncio.client import connect

        for call in range(calls):
            url = f"ws://127.0.0.1:{plan['port']}/freeswitch?token={SECRET}&uuid=b{call}"
            ws = await connect(url + "&mix=stereo&rate=8k", compression=None, max_queue=None)
            await ws.send(json.dumps({"call": call}))
            left, right = audio[2 * call][: n * SAMPLES], audio[2 * call + 1][: n * SAMPLES]
            pcm = np.stack([left, right], axis=1).astype("<i2").tobytes()
            frames = [pcm[i * 640 : (i + 1) * 640] for i in range(n)]
            closers.append(ws.close)
            impulses = {2 * call + c: set(impulse_packets(2 * call + c, n)) for c in (0, 1)}
            start = t0 + (call % 10) * FRAME_S / 10
            tasks.append(send_paced(ws.send, frames, impulses, start, out))
    await asyncio.gather(*tasks)
    for end in closers:  # the PBX hangs up every call
        await end()
    out["late_ms"] = _percentiles(out["late_ms"])
    usage = os.times()
    out["cpu_s"] = usage.user + usage.system
    return out


# -- the bridge side and the run -------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-forks-"))
    loadavg = [round(os.getloadavg()[0], 2)]
    sink = await start_process(
        sys.executable, str(SINK), "--port", "0", "--stats", str(work / "sink.json"),
        "--max-seconds", str(args.seconds + 300), "--markers", str(THRESHOLD),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert sink.stdout is not None
    sink_port = json.loads(await sink.stdout.readline())["port"]
    store = await TranscriptStore.open(work / "t.db")
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{sink_port}/v1/realtime", model="sink")
    calls = ForkCalls(store, endpoint=endpoint, settings=LegSettings(recycle_after_s=3600))
    server: AudioSocketServer | ForkSocketServer
    if args.adapter == "audiosocket":
        server = AudioSocketServer(calls, AudioSocketConfig(enabled=True, port=0, pair_by="suffix"))
    else:
        server = ForkSocketServer(
            calls, ForkSocketConfig(enabled=True, port=0, secret=SECRET), fork_protocols()
        )
    await server.start()
    rss0 = rss_mib()
    plan = {"adapter": args.adapter, "calls": args.calls, "seconds": args.seconds,
            "port": server.port}  # fmt: skip
    (work / "plan.json").write_text(json.dumps(plan))
    send = await start_process(
        sys.executable, __file__, "--sender", str(work / "plan.json"), str(work / "sent.json")
    )
    # Steady window: every call up (the sender starts 2 s after connecting all), 4 s in,
    # until 2 s before the streams end.
    await asyncio.sleep(6.0 + args.calls * 0.01)
    window_s = max(5.0, args.seconds - 8.0)
    cpu0, t0 = self_cpu_s(), time.monotonic()
    window_ns = [time.monotonic_ns(), 0]
    loadavg.append(round(os.getloadavg()[0], 2))
    await asyncio.sleep(window_s)
    cpu, elapsed = self_cpu_s() - cpu0, time.monotonic() - t0
    window_ns[1] = time.monotonic_ns()
    loadavg.append(round(os.getloadavg()[0], 2))
    rss = rss_mib() - rss0
    await send.wait()
    await asyncio.sleep(1.0)
    await server.stop()
    await calls.close()
    await store.close()
    await stop_process(sink)
    sent = json.loads((work / "sent.json").read_text())
    sink_stats = json.loads((work / "sink.json").read_text())
    result = analyse(sent, sink_stats, (window_ns[0], window_ns[1]))
    return {
        "adapter": args.adapter,
        "calls": args.calls,
        "legs": 2 * args.calls,
        "seconds": args.seconds,
        "window_s": round(elapsed, 1),
        "cpu_pct_per_call": round(cpu / elapsed * 100 / args.calls, 3),
        "cpu_pct_all": round(cpu / elapsed * 100, 1),
        **result,
        "sender_late_ms": sent["late_ms"],
        "rss_growth_mib_per_call": round(rss / args.calls, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg": loadavg,
        "work_dir": str(work),
    }


def summary(r: dict[str, Any]) -> str:
    lat = r["latency_added_ms"]
    return "\n".join(
        [
            f"{r['adapter']}: {r['calls']} calls ({r['legs']} legs), {r['seconds']:.0f} s each; "
            f"window {r['window_s']} s; load {r['loadavg']}",
            f"  CPU per call (both legs) {r['cpu_pct_per_call']} % of a core "
            f"({r['cpu_pct_all']} % in all)",
            f"  added latency p50 {lat.get('p50')} / p99 {lat.get('p99')} / max {lat.get('max')}"
            f" ms over {lat['n']} markers (steady: p99 {r['latency_steady_ms'].get('p99')} ms)",
            f"  frames lost {r['frames_lost']}, slipped {r['frames_slipped']}, markers missing "
            f"{r['markers_missing']}, legs unmatched {r['calls_without_sink_match']}",
            f"  RSS +{r['rss_growth_mib_per_call']} MiB per call; sender late "
            f"p99 {r['sender_late_ms'].get('p99')} ms",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", choices=ADAPTERS, default="audiosocket")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0, help="audio per call")
    parser.add_argument("--json", type=Path, help="write the JSON result here too")
    parser.add_argument(
        "--sender", nargs=2, type=Path, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.sender:
        plan = json.loads(args.sender[0].read_text())
        args.sender[1].write_text(json.dumps(asyncio.run(sender(plan))))
        return
    if not 1 <= 2 * args.calls < 2 ** len(ID_PACKETS):
        parser.error(f"--calls must be 1..{(2 ** len(ID_PACKETS) - 1) // 2}")
    result = asyncio.run(run(args))
    print(summary(result))
    line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
