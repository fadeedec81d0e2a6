"""Live-API latency, throughput, server CPU, memory per client, agent-view load time (by hand).

    .venv/bin/python benchmarks/bench_live.py [--legs 100] [--clients 50] [--client-procs 3]
        [--seconds 20] [--client-decode json|scan] [--idle-clients 200] [--no-page-load]
        [--json FILE]

Processes: the bridge HTTP server (uvicorn on 127.0.0.1, a real SQLite file) and the publisher
(the simulated legs) share the main process and its event loop, as legs and server do in
``bridge serve``.  The WebSocket clients run in ``--client-procs`` separate processes (this script
with ``--worker``), each holding its share of the connections on one asyncio loop, so the
clients' own receiving and decoding is not charged to the server's loop.  They still share the
machine's cores with it: ``--client-decode json`` (the default) decodes every message with
``json.loads``, as a real client does; ``scan`` only finds each event's ``seq`` with a byte
pattern, the cheapest client, which leaves the most CPU to the server.

1. Latency and throughput.  ``--legs`` simulated legs (two per call) publish to the hub: every
   80 ms each leg publishes one revision of its current segment (a partial one word longer) and
   every 36th revision (~3 s) the final.  ``--clients`` clients are subscribed to all calls
   (``/api/v1/live``, supervisor token, no compression).

   * latency: from ``time.monotonic_ns()`` just before ``hub.segment(...)`` in the main process
     to ``time.monotonic_ns()`` when the client's ``recv`` returns the WebSocket message that
     carries the event, before the client decodes it.  ``CLOCK_MONOTONIC`` is one clock for all
     processes of a Linux host.  A delivery is one segment event received by one client; a
     partial that the hub coalesced away (a newer revision of the same segment replaced it in
     that client's queue) is not a delivery.  p50, p99 (numpy linear percentiles) and max over
     all deliveries, and p99 over the deliveries of finals alone (finals are never coalesced).
   * published/s: revisions published per second; messages/s: WebSocket messages received by
     all clients per second; events/s: deliveries per second (both over the publishing time).
   * CPU: user + system CPU time of the main process (server, hub and publisher) over the
     publishing time, in % of one core; likewise the client processes together.
   * The machine's 1-minute load average before and after (other processes share the cores).

2. Memory per client: growth of the main process's RSS while ``--idle-clients`` more clients
   (one client process) are connected and subscribed to all calls with no events flowing,
   divided by their number: the server's side of a connection only.

3. Agent view with a 1-hour transcript (two legs, ~1800 finals, seeded into SQLite directly):
   Chromium (if /usr/bin/chromium exists) time to the last segment rendered.

The last line printed is one JSON object with every figure (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK_S = 0.08
WORDS_PER_UTTERANCE = 36  # ~3 s at one revision per 80 ms
HAVE_CHROMIUM = os.path.exists("/usr/bin/chromium")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- client process ------------------------------------------------------------------------------


SEQ_RE = re.compile(rb'\{"seq":(\d+),')  # an event's own seq: the first key of its object


async def worker(url: str, connections: int, out: Path, decode: str) -> None:
    """Hold ``connections`` live clients; stamp every message on receipt; on ``stop`` (stdin),
    write (seq, receive ns) per delivered event to ``out`` and the counts to stdout."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    clients = [
        await connect(url, compression=None, max_size=None, open_timeout=60)
        for _ in range(connections)
    ]
    seqs = array("q")
    times = array("q")
    messages = 0

    async def reader(ws: Any) -> None:
        nonlocal messages
        try:
            while True:
                msg = await ws.recv(decode=False)  # bytes: no UTF-8 decoding in "scan"
                now = time.monotonic_ns()
                messages += 1
                if decode == "scan":
                    found = [int(m) for m in SEQ_RE.findall(msg)]
                else:
                    data = json.loads(msg)
                    if isinstance(data, dict):  # one event per message (the format before arrays)
                        data = [data]
                    found = [event["seq"] for event in data]
                seqs.extend(found)
                times.extend([now] * len(found))
        except ConnectionClosed:
            pass

    readers = [asyncio.create_task(reader(ws)) for ws in clients]
    print("ready", flush=True)
    assert (await asyncio.to_thread(sys.stdin.readline)).strip() == "go"
    cpu0 = cpu_s()
    assert (await asyncio.to_thread(sys.stdin.readline)).strip() == "stop"
    cpu = cpu_s() - cpu0
    for r in readers:
        r.cancel()
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    with out.open("wb") as f:
        seqs.tofile(f)
        times.tofile(f)
    print(json.dumps({"messages": messages, "events": len(seqs), "cpu_s": cpu}), flush=True)


class Workers:
    """The client processes, driven over their stdin/stdout."""

    def __init__(self, url: str, counts: list[int], tmp: Path, decode: str = "json") -> None:
        self.url, self.counts, self.tmp, self.decode = url, counts, tmp, decode
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for i, n in enumerate(self.counts):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                self.url,
                "--connections",
                str(n),
                "--out",
                str(self.tmp / f"worker{i}.bin"),
                "--client-decode",
                self.decode,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line.strip() == b"ready", line

    async def tell(self, word: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(word.encode() + b"\n")
            await proc.stdin.drain()

    async def stop(self) -> list[dict[str, Any]]:
        await self.tell("stop")
        out = []
        for i, proc in enumerate(self.procs):
            assert proc.stdout is not None
            meta = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
            await asyncio.wait_for(proc.wait(), 30)
            meta["file"] = self.tmp / f"worker{i}.bin"
            out.append(meta)
        self.procs = []
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


def split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- main process: server, publisher -------------------------------------------------------------


async def wait_subscribers(hub: Any, n: int) -> None:
    for _ in range(6000):
        if hub.subscribers >= n:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"only {hub.subscribers} of {n} clients subscribed")


async def latency(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import numpy as np

    from bridge.core.types import LegRole
    from bridge.live import LiveHub
    from tests.http.helpers import call, leg, seg
    from tests.http.served import SUPERVISOR, serve_bridge

    hub = LiveHub()
    result: dict[str, Any] = {}
    async with serve_bridge(tmp / "a.db", hub=hub) as served:
        url = f"{served.ws}/api/v1/live?token={SUPERVISOR}"
        workers = Workers(url, split(args.clients, args.client_procs), tmp, args.client_decode)
        try:
            await workers.start()
            await wait_subscribers(hub, args.clients)
            legs = [
                leg(f"leg{i}", f"call{i // 2}", LegRole.CALLER if i % 2 else LegRole.AGENT)
                for i in range(args.legs)
            ]
            for i in range(0, args.legs, 2):
                hub.call_started(call(f"call{i // 2}"))
            sent: dict[int, int] = {}
            finals: set[int] = set()
            seqs = [0] * args.legs
            words = [0] * args.legs
            load0 = os.getloadavg()[0]
            await workers.tell("go")
            cpu0 = cpu_s()
            start = time.perf_counter()
            tick = 0
            while time.perf_counter() - start < args.seconds:
                for i, lg in enumerate(legs):  # every leg: one revision per 80 ms step
                    words[i] += 1
                    final = words[i] >= WORDS_PER_UTTERANCE
                    sent[hub.seq + 1] = time.monotonic_ns()
                    if final:
                        finals.add(hub.seq + 1)
                    hub.segment(
                        lg,
                        seg(
                            "word " * words[i],
                            seq=seqs[i],
                            final=final,
                            leg_id=lg.leg_id,
                            call_id=lg.call_id,
                        ),
                    )
                    if final:
                        seqs[i] += 1
                        words[i] = 0
                tick += 1
                await asyncio.sleep(max(0.0, start + tick * TICK_S - time.perf_counter()))
            elapsed = time.perf_counter() - start
            server_cpu = cpu_s() - cpu0
            await asyncio.sleep(1)  # let the last deliveries arrive
            metas = await workers.stop()
        finally:
            workers.kill()
        load1 = os.getloadavg()[0]

        sent_at = np.full(hub.seq + 1, -1, dtype=np.int64)
        sent_at[list(sent)] = list(sent.values())
        is_final = np.zeros(hub.seq + 1, dtype=bool)
        is_final[list(finals)] = True
        lat_parts, final_parts = [], []
        for meta in metas:
            raw = np.fromfile(meta["file"], dtype=np.int64)
            got_seq, got_ns = raw[: len(raw) // 2], raw[len(raw) // 2 :]
            t0 = sent_at[got_seq]
            keep = t0 >= 0  # segment events (not call.started)
            lat_parts.append((got_ns[keep] - t0[keep]) / 1e6)
            final_parts.append(is_final[got_seq[keep]])
        lat = np.concatenate(lat_parts)
        lat_final = lat[np.concatenate(final_parts)]
        published = hub.counts["segment.partial"] + hub.counts["segment.final"]
        messages = sum(m["messages"] for m in metas)
        p50, p99 = np.percentile(lat, [50, 99])
        result = {
            "legs": args.legs,
            "clients": args.clients,
            "client_procs": len(metas),
            "client_decode": args.client_decode,
            "seconds": round(elapsed, 2),
            "published_per_s": round(published / elapsed, 1),
            "event_bytes_mean": round(  # of the ring's (last 10 000) events, as JSON text
                float(np.mean([len(e.text.encode()) for e in hub.events_since(0)]))
            ),
            "deliveries": len(lat),
            "delivered_fraction": round(len(lat) / (published * args.clients), 4),
            "latency_ms": {
                "p50": round(float(p50), 2),
                "p99": round(float(p99), 2),
                "max": round(float(lat.max()), 2),
                "p99_finals": (
                    round(float(np.percentile(lat_final, 99)), 2) if len(lat_final) else None
                ),
            },
            "messages_per_s": round(messages / elapsed, 1),
            "events_per_s": round(len(lat) / elapsed, 1),
            "server_cpu_pct": round(100 * server_cpu / elapsed, 1),
            "clients_cpu_pct": round(100 * sum(m["cpu_s"] for m in metas) / elapsed, 1),
            "slow_disconnects": hub.slow_disconnects,
            "load_avg_1m": [round(load0, 2), round(load1, 2)],
        }
        lm = result["latency_ms"]
        print(
            f"latency publish->client: {len(lat)} deliveries "
            f"({100 * result['delivered_fraction']:.1f} % of published x clients), "
            f"p50 {lm['p50']:.2f} ms, p99 {lm['p99']:.2f} ms, max {lm['max']:.1f} ms, "
            f"finals p99 {lm['p99_finals']} ms"
        )
        print(
            f"published {result['published_per_s']:.0f} revisions/s; clients received "
            f"{result['messages_per_s']:.0f} messages/s, {result['events_per_s']:.0f} events/s; "
            f"CPU: server process {result['server_cpu_pct']:.0f} %, "
            f"{len(metas)} client processes {result['clients_cpu_pct']:.0f} % (of one core); "
            f"load average {load0:.2f} -> {load1:.2f}"
        )

        if args.idle_clients:
            idle = Workers(url, [args.idle_clients], tmp)
            before = rss_kib()
            try:
                await idle.start()
                await wait_subscribers(hub, args.idle_clients)
                await asyncio.sleep(0.5)
                after = rss_kib()
                await idle.tell("go")
                await idle.stop()
            finally:
                idle.kill()
            result["server_kib_per_idle_client"] = round((after - before) / args.idle_clients, 1)
            print(
                f"memory per idle client (server process RSS, {args.idle_clients} clients): "
                f"{result['server_kib_per_idle_client']:.1f} KiB"
            )
    return result


async def page_load(db: Path) -> dict[str, Any]:
    if not HAVE_CHROMIUM:
        print("page load: /usr/bin/chromium missing, skipped")
        return {}
    from playwright.async_api import async_playwright

    from bridge.core.types import LegRole
    from tests.http.helpers import call, leg, seg
    from tests.http.served import SUPERVISOR, serve_bridge

    async with serve_bridge(db) as served:
        store = served.store
        await store.add_call(call("long", title="1-hour call"))
        for r, role in ((0, LegRole.CALLER), (1, LegRole.AGENT)):
            await store.add_leg(leg(f"long-{r}", "long", role))
        n = 0
        for t in range(0, 3_600_000, 4000):
            lid = f"long-{(t // 4000) % 2}"
            store.put_segment(
                seg(
                    "this is a fairly ordinary sentence of about twelve words here",
                    seq=t,
                    final=True,
                    leg_id=lid,
                    call_id="long",
                    start_ms=t,
                )
            )
            n += 1
        await store.flush()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await page.goto(f"{served.base}/login?token={SUPERVISOR}")  # the login cookie
            t0 = time.perf_counter()
            await page.goto(served.base + "/calls/long")
            await page.wait_for_function(f"document.querySelectorAll('.seg').length >= {n}")
            ms = (time.perf_counter() - t0) * 1000
            print(f"agent view, 1-hour transcript ({n} segments): {ms:.0f} ms to all rendered")
            await browser.close()
    return {"agent_view_1h_ms": round(ms), "agent_view_segments": n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client-procs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--client-decode", choices=("json", "scan"), default="json")
    parser.add_argument("--idle-clients", type=int, default=200)
    parser.add_argument("--no-page-load", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.connections, args.out, args.client_decode))
        return
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as d:
        result = asyncio.run(latency(args, Path(d)))
        if not args.no_page_load:
            result.update(asyncio.run(page_load(Path(d) / "b.db")))
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
