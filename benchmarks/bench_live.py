"""Live-API latency, memory per client, and agent-view load time (run by hand).

    .venv/bin/python benchmarks/bench_live.py [--legs 100] [--clients 50] [--seconds 20]

1. 100 simulated legs publish a partial every 80 ms and a final every ~3 s to the hub of a real
   bridge HTTP server (uvicorn, 127.0.0.1); 50 WebSocket clients subscribed to all calls.  Latency
   = publish (hub.segment) to the client's receive, both in this process (one clock); clients run
   in a separate process-less thread-free way: same loop, so the numbers include the clients' own
   decoding (a pessimistic bound on one core).
2. Memory per client: RSS growth over 200 extra idle subscribed clients.
3. Agent view with a 1-hour transcript (two legs, ~1800 finals, seeded into SQLite directly):
   Chromium (if /usr/bin/chromium exists) time to the last segment rendered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect  # noqa: E402

from bridge.core.types import LegRole  # noqa: E402
from bridge.live import LiveHub  # noqa: E402
from tests.http.helpers import call, leg, seg  # noqa: E402
from tests.http.served import SUPERVISOR, serve_bridge  # noqa: E402

HAVE_CHROMIUM = os.path.exists("/usr/bin/chromium")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def latency(args: argparse.Namespace, db: Path) -> None:
    hub = LiveHub()
    sent: dict[int, float] = {}
    lat: list[float] = []
    async with serve_bridge(db, hub=hub) as served:
        url = f"{served.ws}/api/v1/live?token={SUPERVISOR}"
        clients = [await connect(url, compression=None) for _ in range(args.clients)]

        async def reader(ws) -> None:  # type: ignore[no-untyped-def]
            async for msg in ws:
                now = time.perf_counter()
                seq = json.loads(msg)["seq"]
                t = sent.get(seq)
                if t is not None:
                    lat.append(now - t)

        readers = [asyncio.create_task(reader(ws)) for ws in clients]
        legs = [
            leg(f"leg{i}", f"call{i // 2}", LegRole.CALLER if i % 2 else LegRole.AGENT)
            for i in range(args.legs)
        ]
        for i in range(0, args.legs, 2):
            hub.call_started(call(f"call{i // 2}"))
        seqs = [0] * args.legs
        words = [0] * args.legs
        start = time.perf_counter()
        tick = 0
        while time.perf_counter() - start < args.seconds:
            for i, lg in enumerate(legs):  # every leg: one revision per 80 ms step
                words[i] += 1
                final = words[i] >= 36  # ~3 s utterances
                sent[hub.seq + 1] = time.perf_counter()
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
            await asyncio.sleep(max(0.0, start + tick * 0.08 - time.perf_counter()))
        await asyncio.sleep(1)
        for r in readers:
            r.cancel()
        for ws in clients:
            await ws.close()
        q = statistics.quantiles(lat, n=100)
        print(
            f"latency publish->client: {len(lat)} deliveries, p50 {q[49] * 1000:.2f} ms, "
            f"p99 {q[98] * 1000:.2f} ms, max {max(lat) * 1000:.1f} ms; revisions/s "
            f"{(hub.counts['segment.partial'] + hub.counts['segment.final']) / args.seconds:.0f}"
        )

        before = rss_kib()
        extra = [await connect(url, compression=None) for _ in range(200)]
        await asyncio.sleep(0.5)
        after = rss_kib()
        print(
            f"memory per idle client (server + client side in one process): "
            f"{(after - before) / 200:.1f} KiB"
        )
        for ws in extra:
            await ws.close()


async def page_load(db: Path) -> None:
    if not HAVE_CHROMIUM:
        print("page load: /usr/bin/chromium missing, skipped")
        return
    from playwright.async_api import async_playwright

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
            await page.goto(served.base + "/login")
            await page.evaluate(f"sessionStorage.setItem('bridgeToken', '{SUPERVISOR}')")
            t0 = time.perf_counter()
            await page.goto(served.base + "/calls/long")
            await page.wait_for_function(f"document.querySelectorAll('.seg').length >= {n}")
            print(
                f"agent view, 1-hour transcript ({n} segments): "
                f"{(time.perf_counter() - t0) * 1000:.0f} ms to all segments rendered"
            )
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(latency(args, Path(d) / "a.db"))
        asyncio.run(page_load(Path(d) / "b.db"))


if __name__ == "__main__":
    main()
