"""The ARI externalMedia fuzzer's long run: hostile RTP on the legs' ports, with a report.

The CI test (``tests/integration/test_fork_ari.py``) sends 10,000 datagrams on one call's two
ports; this sends as many as you ask, ``--per-call`` at a time on each call's two ports,
``--concurrency`` calls at once, with the same generator (``tests/ingest/fuzz/rtp.py``) through
the same Asterisk peer (``tests/ingest/peers/ari.py``) to the controller started in this
process, whose legs stream to ``benchmarks/sink.py`` (the realtime protocol without ASR).  Then
a good call.  Checks: every call taken is stored as ended ``hangup``, the good call has its two
legs, no exception reached the event loop.

Run::

    .venv/bin/python benchmarks/fuzz_ari.py --datagrams 200000 [--per-call 10000]
        [--concurrency 8] [--seed 1000] [--json out.json]

Progress on stderr (a line per round of calls), the report (JSON) on stdout: datagrams sent,
calls, end causes, the ports' counters summed (packets taken, invalid, late, lost, ...).  Exit
status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # forks.py, as the tests import it

import numpy as np  # noqa: E402
from bench_sip import report, start_sink, stop_process  # noqa: E402
from forks import ari_controller  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from tests.ingest.fuzz import rtp as rtp_fuzz  # noqa: E402
from tests.ingest.peers import FakeAsterisk  # noqa: E402


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fuzz-ari-"))
    sink, port = await start_sink(work / "sink.json")
    endpoint = AsrEndpoint(
        url=f"ws://127.0.0.1:{port}/v1/realtime", model="sink", stall_timeout_s=10
    )
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(str(context.get("message"))))
    rng = random.Random(args.seed)
    sent = calls = 0
    started = time.monotonic()
    try:
        async with (
            FakeAsterisk() as pbx,
            ari_controller(work / "t.db", endpoint, pbx) as (controller, store),
        ):

            async def one() -> None:
                raw = rtp_fuzz.datagrams(random.Random(rng.random()), args.per_call)
                call = await pbx.start_call(raw=raw, raw_interval_ms=1, setup_timeout_s=30)
                await call.wait()

            while sent < args.datagrams:
                per_call = 2 * args.per_call  # a call's two ports
                batch = min(args.concurrency, -(-(args.datagrams - sent) // per_call))
                await asyncio.gather(*(one() for _ in range(batch)))
                calls += batch
                sent += batch * per_call
                print(
                    f"[fuzz-ari] {sent} datagrams over {calls} calls, {len(unhandled)} "
                    f"unhandled, {time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                )
            speech = np.zeros(16_000, np.float32)
            await pbx.call(speech, speech, setup_timeout_s=30)
            async with asyncio.timeout(120):
                while True:
                    stored = await store.list_calls(limit=calls + 10)
                    if len(stored) == calls + 1 and all(c.ended_at_ms for c in stored):
                        break
                    await asyncio.sleep(0.2)
            totals = dict(controller.ports.totals)
            good = await store.get_call(stored[0].call_id)
    finally:
        loop.set_exception_handler(None)
        await stop_process(sink)
    causes = Counter(str(c.end_cause) for c in stored[1:])
    problems = []
    if set(causes) != {"hangup"}:
        problems.append(f"end causes {dict(causes)}, expected hangup only")
    if good is None or len(good.legs) != 2:
        problems.append("the good call after the fuzz did not get its two legs")
    if unhandled:
        problems.append(f"{len(unhandled)} exceptions reached the event loop: {unhandled[:3]}")
    return {
        "datagrams": sent,
        "calls": calls,
        "seconds": round(time.monotonic() - started, 1),
        "end_causes": dict(causes),
        "ports": totals,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=200_000, help="in all, both ports")
    parser.add_argument("--per-call", type=int, default=10_000, help="datagrams per port")
    parser.add_argument("--concurrency", type=int, default=8, help="calls at once")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    return report(asyncio.run(run(args)), args.json)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
