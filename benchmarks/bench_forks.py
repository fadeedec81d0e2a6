"""Load benchmark of the media forks: N concurrent calls (both legs) into one adapter.

Run by hand from the repository root (not in tests)::

    .venv/bin/python benchmarks/bench_forks.py --adapter audiosocket|freeswitch|jambonz|
        asterisk|twilio|audiohook|ari|all [--calls 100] [--seconds 40]
        [--asterisk-format slin|ulaw] [--deflate] [--json FILE]

Set-up, each part in its own process: this process is the bridge (the adapter's listener,
:class:`bridge.ingest.fork.ForkCalls`, SQLite), ``benchmarks/sink.py --markers`` stands in for
the ASR server, and a sender process (this script with ``--sender``;
``benchmarks/fork_senders.py``) plays the PBX, speaking the adapter's protocol as that PBX does:
AudioSocket and Asterisk chan_websocket one connection per side of a call, the others one
stereo (or two-track) connection per call.  Every side sends speech-like 8 kHz audio in 20 ms
messages on an absolute schedule, with full-scale impulses as the last sample of some frames
(the start, the leg's index in binary, then one a second: the plan of ``bench_sip.py``),
records when it sent each impulse frame, and ends every call normally (hangup, close, stop).
``ari`` is the ARI controller with externalMedia RTP: the calls are set up over ARI first
(Asterisk's ARI is the tests' peer, ``tests/ingest/peers/ari.py``, in this process for the
signalling only), the sender then sends each leg's RTP to the port the controller opened for
it, and the calls are hung up over ARI when it is done (``--asterisk-format`` slin or ulaw).
``all`` runs every adapter in turn (``asterisk`` with ``slin`` and with ``ulaw``), each in a
fresh process, then prints a table and one JSON object with every result.

Printed (a summary, then one JSON object): ``cpu_pct_per_call`` (this process's CPU over the
steady window, every call up, divided by the calls: both legs of a call), ``latency_added_ms``
(p50/p99/max over the 1 s markers: the sink's receive time minus the frame's send time, less the
wait for the marker's 80 ms chunk to fill: the socket hop, the adapter, resampling, the leg and
its websocket), ``frames_lost``/``frames_slipped``/``markers_missing``, RSS growth per call,
how the calls ended in SQLite (``end_causes``) and the bridge's warnings (``bridge_warnings``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sip import (  # noqa: E402
    ID_PACKETS,
    THRESHOLD,
    analyse,
    self_cpu_s,
    start_process,
    start_sink,
    stop_process,
)
from fork_senders import ADAPTERS, SECRET, sender  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.cli.runner import loop_factory  # noqa: E402
from bridge.config.ingest import (  # noqa: E402
    LOOPBACK,
    AriConfig,
    AudioSocketConfig,
    ForkSocketConfig,
    allowed,
)
from bridge.ingest.ari import AriController  # noqa: E402
from bridge.ingest.audiosocket import AudioSocketServer  # noqa: E402
from bridge.ingest.fork import ForkCalls  # noqa: E402
from bridge.ingest.rtp import RtpPorts  # noqa: E402
from bridge.ingest.websocket import ForkSocketServer, fork_protocols  # noqa: E402
from bridge.leg import LegSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402
from tests.ingest.peers import AriCall, FakeAsterisk  # noqa: E402

READY_TIMEOUT_S = 120.0  # for the sender to open every call


# -- the bridge side and the run -------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Warnings(logging.Handler):
    """Every warning the bridge logs (a dropped stream, a refused message): printed to stderr
    and kept for the result."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        print(line, file=sys.stderr)
        self.lines.append(line[:300])


def ended(db: Path) -> dict[str, Any]:
    """How the calls ended, and their legs, as SQLite has them after the run."""
    with sqlite3.connect(db) as conn:
        causes = dict(conn.execute("SELECT end_cause, count(*) FROM calls GROUP BY 1"))
        (legs,) = conn.execute("SELECT count(*) FROM legs").fetchone()
    return {"end_causes": {str(k): v for k, v in causes.items()}, "legs_stored": legs}


def label(args: argparse.Namespace) -> str:
    """``asterisk/ulaw``, ``freeswitch+deflate``, ..."""
    asterisk = args.adapter in ("asterisk", "ari")
    name = str(args.adapter) + (f"/{args.asterisk_format}" if asterisk else "")
    return name + ("+deflate" if args.deflate and args.adapter != "audiosocket" else "")


class AriSide:
    """``--adapter ari``: the bridge's ARI controller and its RTP ports, with Asterisk's ARI
    (REST and events only) in this process; :meth:`start` sets up ``calls`` calls and gives
    each call's two ports in ``rtp`` (caller, callee) for the sender."""

    port = 0  # no listener: the sender sends to the ports in ``rtp``

    def __init__(self, calls: ForkCalls, args: argparse.Namespace) -> None:
        self.pbx = FakeAsterisk()
        self.fork_calls = calls
        self.calls_wanted = args.calls
        self.format = args.asterisk_format
        self.ports = RtpPorts(host="127.0.0.1", permitted=lambda ip: allowed(ip, LOOPBACK))
        self.stopping = asyncio.Event()
        self.calls: list[AriCall] = []
        self.rtp: list[list[int]] = []

    async def start(self) -> None:
        await self.pbx.start()
        config = AriConfig(ari_url=self.pbx.url, password=self.pbx.password, format=self.format)
        controller = AriController(self.fork_calls, self.ports, config)
        self.running = asyncio.create_task(controller.run(self.stopping))
        await asyncio.wait_for(controller.connected.wait(), 10)
        starts = [
            self.pbx.start_call(raw=[], setup_timeout_s=120) for _ in range(self.calls_wanted)
        ]
        self.calls = list(await asyncio.gather(*starts))
        for call in self.calls:
            ports = {}
            for media, spies in self.pbx.routes(call.channel_id).items():
                rtp = self.pbx.channels[media].rtp
                assert rtp is not None
                ports[next(iter(spies))] = rtp.remote[1]
            self.rtp.append([ports["in"], ports["out"]])

    async def stop(self) -> None:
        for call in self.calls:
            await call.hangup()
        async with asyncio.timeout(60):  # the controller ends the legs on the snoops' ends
            while len(self.fork_calls):  # noqa: ASYNC110 (ForkCalls signals no "all ended")
                await asyncio.sleep(0.1)
        self.stopping.set()
        await self.running
        await self.ports.stop()
        await self.pbx.stop()


def server_for(
    args: argparse.Namespace, calls: ForkCalls
) -> AudioSocketServer | ForkSocketServer | AriSide:
    if args.adapter == "ari":
        return AriSide(calls, args)
    if args.adapter == "audiosocket":
        return AudioSocketServer(calls, AudioSocketConfig(enabled=True, port=0, pair_by="suffix"))
    # No jambonz credentials, Twilio auth token or AudioHook API key: the token guards each.
    config = ForkSocketConfig(enabled=True, port=0, secret=SECRET)
    return ForkSocketServer(calls, config, fork_protocols())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-forks-"))
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    loadavg = [round(os.getloadavg()[0], 2)]
    sink, sink_port = await start_sink(
        work / "sink.json", "--max-seconds", str(args.seconds + 300), "--markers", str(THRESHOLD)
    )
    store = await TranscriptStore.open(work / "t.db")
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{sink_port}/v1/realtime", model="sink")
    calls = ForkCalls(store, endpoint=endpoint, settings=LegSettings(recycle_after_s=3600))
    server = server_for(args, calls)
    await server.start()
    rss0 = rss_mib()
    plan = {"adapter": args.adapter, "calls": args.calls, "seconds": args.seconds,
            "port": server.port, "asterisk_format": args.asterisk_format,
            "deflate": args.deflate,
            "rtp": server.rtp if isinstance(server, AriSide) else []}  # fmt: skip
    (work / "plan.json").write_text(json.dumps(plan))
    send = await start_process(
        sys.executable, __file__, "--sender", str(work / "plan.json"), str(work / "sent.json"),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert send.stdout is not None
    async with asyncio.timeout(READY_TIMEOUT_S):  # "ready <first call's start> <last call's>"
        ready = (await send.stdout.readline()).decode().split()
    if not ready:
        raise RuntimeError(f"the sender exited ({await send.wait()}) before opening every call")
    first, last = float(ready[1]), float(ready[2])
    # Steady window: every call streaming, from 3 s after the last one began until 3 s before
    # the first one ends.
    window_s = first + args.seconds - 3.0 - (last + 3.0)
    if window_s < 2.0:
        raise RuntimeError(f"the calls took {last - first:.1f} s to open: raise --seconds")
    await asyncio.sleep(max(0.0, last + 3.0 - time.monotonic()))
    cpu0, t0 = self_cpu_s(), time.monotonic()
    window_ns = [time.monotonic_ns(), 0]
    loadavg.append(round(os.getloadavg()[0], 2))
    await asyncio.sleep(window_s)
    cpu, elapsed = self_cpu_s() - cpu0, time.monotonic() - t0
    window_ns[1] = time.monotonic_ns()
    loadavg.append(round(os.getloadavg()[0], 2))
    rss = rss_mib() - rss0
    if await send.wait():
        raise RuntimeError(f"the sender failed ({send.returncode})")
    await asyncio.sleep(1.0)
    await server.stop()
    await calls.close()
    await store.close()
    await stop_process(sink)
    logging.getLogger().removeHandler(warnings)
    sent = json.loads((work / "sent.json").read_text())
    sink_stats = json.loads((work / "sink.json").read_text())
    result = analyse(sent, sink_stats, (window_ns[0], window_ns[1]))
    return {
        "adapter": label(args),
        "calls": args.calls,
        "legs": 2 * args.calls,
        "seconds": args.seconds,
        "ramp_s": round(last - first, 2),
        "window_s": round(elapsed, 1),
        "cpu_pct_per_call": round(cpu / elapsed * 100 / args.calls, 3),
        "cpu_pct_all": round(cpu / elapsed * 100, 1),
        **result,
        **ended(work / "t.db"),
        "bridge_warnings": len(warnings.lines),
        "first_warnings": warnings.lines[:5],
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
            f"opened in {r['ramp_s']} s; window {r['window_s']} s; load {r['loadavg']}",
            f"  CPU per call (both legs) {r['cpu_pct_per_call']} % of a core "
            f"({r['cpu_pct_all']} % in all)",
            f"  added latency p50 {lat.get('p50')} / p99 {lat.get('p99')} / max {lat.get('max')}"
            f" ms over {lat['n']} markers (steady: p99 {r['latency_steady_ms'].get('p99')} ms)",
            f"  frames lost {r['frames_lost']}, slipped {r['frames_slipped']}, markers missing "
            f"{r['markers_missing']}, legs unmatched {r['calls_without_sink_match']}",
            f"  calls ended {r['end_causes']}, {r['legs_stored']} legs stored; "
            f"{r['bridge_warnings']} bridge warnings",
            f"  RSS +{r['rss_growth_mib_per_call']} MiB per call; sender late "
            f"p99 {r['sender_late_ms'].get('p99')} ms",
        ]
        + [f"  warning: {line}" for line in r["first_warnings"]]
    )


TABLE = (
    ("adapter", "adapter", "{}"),
    ("CPU %/call", "cpu_pct_per_call", "{:.3f}"),
    ("p50 ms", ("latency_added_ms", "p50"), "{}"),
    ("p99 ms", ("latency_added_ms", "p99"), "{}"),
    ("max ms", ("latency_added_ms", "max"), "{}"),
    ("lost", "frames_lost", "{}"),
    ("missing", "markers_missing", "{}"),
    ("unmatched", "calls_without_sink_match", "{}"),
    ("ended", "end_causes", "{}"),
    ("warnings", "bridge_warnings", "{}"),
)


def table(results: list[dict[str, Any]]) -> str:
    """One row per adapter (``--adapter all``)."""

    def cell(r: dict[str, Any], key: str | tuple[str, str], fmt: str) -> str:
        value = r[key[0]].get(key[1]) if isinstance(key, tuple) else r[key]
        if isinstance(value, dict):
            value = ",".join(f"{k} {v}" for k, v in value.items())
        return fmt.format(value) if value is not None else "-"

    rows = [[name for name, _, _ in TABLE]]
    rows += [[cell(r, key, fmt) for _, key, fmt in TABLE] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every adapter in turn (Asterisk in both formats), each in a fresh process: its own CPU
    and RSS figures."""
    results = []
    runs = [(a, f) for a in ADAPTERS for f in (("slin", "ulaw") if a == "asterisk" else ("slin",))]
    for adapter, fmt in runs:
        command = [sys.executable, __file__, "--adapter", adapter, "--calls", str(args.calls)]
        command += ["--seconds", str(args.seconds), "--asterisk-format", fmt]
        command += ["--deflate"] if args.deflate else []
        command += ["--loop", args.loop]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        *lines, last = done.stdout.rstrip("\n").split("\n")
        print("\n".join(lines), flush=True)
        results.append(json.loads(last))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", choices=(*ADAPTERS, "all"), default="audiosocket")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0, help="audio per call")
    parser.add_argument(
        "--asterisk-format", choices=("slin", "ulaw"), default="slin",
        help="the format chan_websocket streams, c(slin) or c(ulaw) (all: both)",
    )  # fmt: skip
    parser.add_argument(
        "--deflate", action="store_true",
        help="WebSocket senders offer per-message deflate (mod_audio_stream's default)",
    )  # fmt: skip
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop",
        help="the bridge's event loop (BRIDGE_EVENT_LOOP; bridge serve's default: uvloop)",
    )  # fmt: skip
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
    if args.adapter == "all":
        results = run_all(args)
        print(table(results))
        line = json.dumps({"adapters": results})
    else:
        os.environ["BRIDGE_EVENT_LOOP"] = args.loop
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(run(args))
        result["loop"] = args.loop
        print(summary(result))
        line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
