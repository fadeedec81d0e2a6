"""How many legs one ASR server carries in real time: step lag p50/p99 against N concurrent,
de-synchronised legs (issue 16: the number that sets ``asr.max_legs`` for a server).

Run by hand, from the repository root::

    .venv/bin/python benchmarks/bench_capacity.py --asr-url ws://GPU:8000/v1/realtime \\
        [--model mistralai/Voxtral-Mini-4B-Realtime-2602] [--api-key KEY] \\
        [--legs 1,2,4,8,16,32] [--seconds 30] [--bound-ms 500] [--json FILE]

Without ``--asr-url`` it starts the real vLLM CPU server with the tiny Voxtral
(``tests/integration/vllm_server.py``; ``bash .ci/setup-vllm.sh`` first), which gives the
protocol's costs on this machine, not a GPU's capacity.

For each N in ``--legs``: N real ``Leg`` objects (the bridge's own pipeline and client, one
SQLite file) stream ``--seconds`` of a -20 dBFS tone in real time, 20 ms frames; leg *i* starts
``i * 80 / N`` ms after the first plus ``i * 37`` ms (mod 1 s), so their 80 ms chunks do not
reach the server together (de-synchronised, as independent calls are).  Each step's lag is the
time from the chunk that completed the step's audio being handed to the client to the step's
delta (``Leg.step_lag_ms``, what ``asr.max_step_lag_ms`` bounds), sampled at every step after
the first 3 s.  Reported per N: p50/p99/max step lag, the legs that went ``lagging`` at the
bound ``asr.max_step_lag_ms`` would use (3000 ms), gaps, and this process's CPU per leg; then
the largest N whose p99 stays within ``--bound-ms`` — the ``max_legs`` to configure, less a
margin for longer sessions (steps slow as a session grows, vLLM #58324, bounded by recycling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "tests" / "integration"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from vllm_server import VllmServer  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.core.asr_protocol import AsrEvent, StepText  # noqa: E402
from bridge.core.audio import LegAudio  # noqa: E402
from bridge.core.types import (  # noqa: E402
    AudioEncoding,
    CallId,
    CallInfo,
    LegId,
    LegInfo,
    LegRole,
    LegSource,
)
from bridge.leg import Leg, LegSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402

RATE = 16_000
FRAME = RATE // 50  # 20 ms
WARM_UP_S = 3.0


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (3277.0 * np.sin(2 * np.pi * 440.0 * t)).astype("<i2").tobytes()


async def feed_realtime(
    leg: Leg, audio: bytes, offset_s: float, each: Callable[[Leg], None] | None = None
) -> None:
    """Hand ``leg`` its ``audio`` (16 kHz PCM16) in 20 ms frames on a real-time grid starting
    ``offset_s`` from now; ``each(leg)`` after every frame."""
    await asyncio.sleep(offset_s)
    begin = time.monotonic()
    for k, i in enumerate(range(0, len(audio), 2 * FRAME)):
        leg.receive_frame(audio[i : i + 2 * FRAME])
        if each is not None:
            each(leg)
        delay = begin + (k + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_n(
    n: int, args: argparse.Namespace, endpoint: AsrEndpoint, db: Path
) -> dict[str, Any]:
    audio = tone(args.seconds)
    lags: list[float] = []
    settings = LegSettings(recycle_after_s=3600, max_step_lag_ms=3000.0)
    async with await TranscriptStore.open(db) as store:
        now_ms = int(time.time() * 1000)
        call_id = CallId(uuid.uuid4().hex)
        await store.add_call(CallInfo(call_id, LegSource.FILE, now_ms, title=f"capacity {n}"))
        legs: list[Leg] = []
        for i in range(n):
            info = LegInfo(
                call_id, LegId(uuid.uuid4().hex), LegRole.CALLER, f"leg {i}", "pcm16/16000",
                LegSource.FILE, now_ms,
            )  # fmt: skip
            await store.add_leg(info)
            leg = Leg(info, LegAudio(RATE, AudioEncoding.PCM16), endpoint, store, settings=settings)
            on_event = leg.client.on_event
            started = time.monotonic()

            def timed(
                event: AsrEvent, leg: Leg = leg, on_event: Any = on_event, started: float = started
            ) -> None:
                on_event(event)
                if isinstance(event, StepText) and time.monotonic() - started > WARM_UP_S:
                    if leg.step_lag_ms is not None:
                        lags.append(leg.step_lag_ms)

            leg.client.on_event = timed
            leg.start()
            legs.append(leg)
        offsets = [((i * 80 / n) + i * 37) % 1000 / 1000 for i in range(n)]
        lagging = set()
        cpu0, t0 = time.process_time(), time.monotonic()

        def note_lagging(leg: Leg) -> None:
            if leg.lagging:
                lagging.add(leg.info.leg_id)

        await asyncio.gather(
            *(
                feed_realtime(leg, audio, off, note_lagging)
                for leg, off in zip(legs, offsets, strict=True)
            )
        )
        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - t0
        results = [await leg.finish(timeout_s=120) for leg in legs]
        await store.end_call(call_id, ended_at_ms=int(time.time() * 1000), cause="completed")
    return {
        "legs": n,
        "steps_sampled": len(lags),
        "step_lag_ms": {
            "p50": percentile(lags, 50),
            "p99": percentile(lags, 99),
            "max": round(max(lags), 1) if lags else None,
        },
        "legs_lagging_at_3000ms": len(lagging),
        "gaps_ms": sum(r.gaps_ms for r in results),
        "failures": [r.failure for r in results if r.failure],
        "client_cpu_pct_per_leg": round(100 * cpu_s / wall_s / n, 3),
    }


async def main_async(args: argparse.Namespace, endpoint: AsrEndpoint, work: Path) -> dict[str, Any]:
    runs = []
    for n in args.legs:
        r = await run_n(n, args, endpoint, work / f"legs-{n}.db")
        lag = r["step_lag_ms"]
        print(
            f"{n:4d} legs: step lag p50 {lag['p50']} / p99 {lag['p99']} / max {lag['max']} ms "
            f"over {r['steps_sampled']} steps; lagging {r['legs_lagging_at_3000ms']}, "
            f"gaps {r['gaps_ms']} ms, client CPU {r['client_cpu_pct_per_leg']} %/leg",
            flush=True,
        )
        runs.append(r)
    fits = [r["legs"] for r in runs if (r["step_lag_ms"]["p99"] or 0) <= args.bound_ms]
    return {
        "bench": "capacity",
        "asr_url": endpoint.url,
        "model": endpoint.model,
        "seconds": args.seconds,
        "bound_ms": args.bound_ms,
        "max_legs_within_bound": max(fits, default=0),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asr-url", help="a running server (default: start the tiny vLLM CPU one)")
    parser.add_argument("--model", default="mistralai/Voxtral-Mini-4B-Realtime-2602")
    parser.add_argument("--api-key", default=os.environ.get("BRIDGE_ASR_API_KEY"))
    parser.add_argument(
        "--legs", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated N, each run in turn (default 1,2,4,8)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per leg per run")
    parser.add_argument("--bound-ms", type=float, default=500.0, help="p99 step lag allowed")
    parser.add_argument("--json", help="also write the JSON result to this file")
    args = parser.parse_args()
    if not all(n > 0 for n in args.legs) or not WARM_UP_S < args.seconds <= 600:
        parser.error(f"--legs must be positive and --seconds in ({WARM_UP_S:g}, 600]")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    server = None
    if args.asr_url:
        endpoint = AsrEndpoint(url=args.asr_url, model=args.model, api_key=args.api_key)
    else:
        server = VllmServer(work_dir=work / "server", max_model_len=2048)
        server.start()
        print(f"tiny vLLM CPU server up in {server.startup_seconds:.1f} s at {server.url}")
        endpoint = AsrEndpoint(url=server.url, model=server.model)
    try:
        result = asyncio.run(main_async(args, endpoint, work))
    finally:
        if server is not None:
            server.close()
    line = json.dumps(result)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)


if __name__ == "__main__":
    main()
