"""The ASR pool's costs (issue 16 item 1): placement, failover, and CPU per leg across backends.

Run by hand, from the repository root::

    .venv/bin/python benchmarks/bench_pool.py [--parts placement,failover,spread] \\
        [--legs 8] [--kills 3] [--spread-legs 100] [--spread-seconds 30] [--rounds 2] [--json F]

* ``placement``: CPU µs per leg start of :meth:`AsrPool.place` + :meth:`AsrPool.release` (what a
  pool adds to starting a leg), for pools of 1, 4 and 16 backends.
* ``failover``: two real vLLM servers on CPU (the tiny Voxtral, ``tests/integration/
  vllm_server.py``; ``bash .ci/setup-vllm.sh`` first) behind one pool; ``--legs`` legs stream a
  tone in real time, all placed on server *a* (its budget is larger); 3 s in, *a* is SIGKILLed.
  Per leg: the time from the kill to the first ``input_audio_buffer.append`` sent to *b* (p50/
  p99/max over every leg of every kill), the audio sent again there (the replay), gaps and
  failures.  *a* is then restarted and, once its probe passes, takes the next round's legs;
  ``--kills`` rounds.
* ``spread``: ``benchmarks/bench_legs.py``'s real-time load (``--spread-legs`` legs, G.711, the
  whole pipeline, each backend a ``benchmarks/sink.py`` process) with 1 and then 4 backends in
  the pool, alternated ``--rounds`` times; CPU µs per 20 ms frame of each, and the ratio (the
  pool's target: < 2 % more with 4 backends).

The last line printed is one JSON object with every figure.
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
for extra in (REPO, REPO / "tests" / "integration", REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import bench_legs  # noqa: E402
from bench_capacity import feed_realtime, tone  # noqa: E402
from vllm_server import VllmServer  # noqa: E402
from websockets.asyncio.client import connect as websockets_connect  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.asr.pool import AsrPool  # noqa: E402
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
KILL_AT_S = 3.0


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
        "max": round(max(values), 1),
    }


# -- placement ---------------------------------------------------------------------------------


def run_placement(n_starts: int = 200_000) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (1, 4, 16):
        pool = AsrPool(
            [
                AsrEndpoint(url=f"ws://10.0.0.{i}:8000/v1/realtime", model="m", max_legs=10**9)
                for i in range(1, n + 1)
            ]
        )
        held = [pool.place() for _ in range(50 * n)]  # a loaded pool: 50 legs per backend
        t0 = time.thread_time_ns()
        for _ in range(n_starts):
            pool.release(pool.place())
        out[f"{n}_backends_us"] = round((time.thread_time_ns() - t0) / n_starts / 1e3, 3)
        for backend in held:
            pool.release(backend)
    return out


# -- failover ----------------------------------------------------------------------------------


def appends_by_url(log: list[tuple[str, float]]) -> Callable[..., Any]:
    """A ``connect_fn`` that logs (url, when) for the first append sent on each connection."""

    async def connect(url: str, *args: Any, **kwargs: Any) -> Any:
        ws = await websockets_connect(url, *args, **kwargs)
        real_send = ws.send
        first = [True]

        async def send(message: Any, *a: Any, **kw: Any) -> None:
            await real_send(message, *a, **kw)
            if first[0] and isinstance(message, str) and message.startswith(bench_legs.APPEND_HEAD):
                first[0] = False
                log.append((url, time.monotonic()))

        ws.send = send  # type: ignore[method-assign]
        return ws

    return connect


async def failover_round(
    pool: AsrPool, a: VllmServer, n: int, seconds: float, db: Path
) -> dict[str, Any]:
    audio = tone(seconds)
    logs: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    killed_at: list[float] = []
    async with await TranscriptStore.open(db) as store:
        now_ms = int(time.time() * 1000)
        call_id = CallId(uuid.uuid4().hex)
        await store.add_call(CallInfo(call_id, LegSource.FILE, now_ms, title="failover"))
        legs: list[Leg] = []
        for i in range(n):
            info = LegInfo(
                call_id, LegId(uuid.uuid4().hex), LegRole.CALLER, f"leg {i}", "pcm16/16000",
                LegSource.FILE, now_ms,
            )  # fmt: skip
            await store.add_leg(info)
            leg = Leg(
                info,
                LegAudio(RATE, AudioEncoding.PCM16),
                pool,
                store,
                settings=LegSettings(recycle_after_s=3600),
                connect_fn=appends_by_url(logs[i]),
            )
            leg.start()
            legs.append(leg)
        placed = [b.legs for b in pool.backends]

        async def kill() -> None:
            await asyncio.sleep(KILL_AT_S)
            killed_at.append(time.monotonic())
            await asyncio.to_thread(a.kill)

        offsets = [(i * 37 % 1000) / 1000 for i in range(n)]
        await asyncio.gather(
            kill(),
            *(feed_realtime(leg, audio, off) for leg, off in zip(legs, offsets, strict=True)),
        )
        results = [await leg.finish(timeout_s=120) for leg in legs]
        await store.end_call(call_id, ended_at_ms=int(time.time() * 1000), cause="completed")
    b_url = pool.backends[1].endpoint.url
    to_b = [
        (next((t for url, t in log if url == b_url and t > killed_at[0]), None)) for log in logs
    ]
    return {
        "placed": placed,
        "failover_ms": [round((t - killed_at[0]) * 1000, 1) for t in to_b if t is not None],
        "not_moved": sum(1 for t in to_b if t is None),
        "replay_ms": [round(leg.client.replayed_samples / 16, 1) for leg in legs],
        "gaps_ms": sum(r.gaps_ms for r in results),
        "failures": [r.failure for r in results if r.failure],
    }


async def run_failover(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    a = VllmServer(work_dir=work / "a", max_model_len=2048)
    b = VllmServer(work_dir=work / "b", max_model_len=2048)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    endpoints = [
        AsrEndpoint(url=s.url, model=s.model, max_legs=legs, stall_timeout_s=10)
        for s, legs in ((a, 2 * args.legs), (b, args.legs))
    ]
    pool = AsrPool(endpoints, ["a", "b"])
    stop = asyncio.Event()
    probes = asyncio.create_task(pool.watch(stop, interval_s=1.0))
    rounds = []
    try:
        for k in range(args.kills):
            r = await failover_round(pool, a, args.legs, KILL_AT_S + 5.0, work / f"r{k}.db")
            print(
                f"kill {k + 1}: placed {r['placed']}, failover {percentiles(r['failover_ms'])} ms, "
                f"replay {percentiles(r['replay_ms'])} ms, gaps {r['gaps_ms']} ms",
                flush=True,
            )
            rounds.append(r)
            t0 = time.monotonic()
            await asyncio.to_thread(a.restart)
            for _ in range(600):  # its probe runs every second
                if pool.backends[0].healthy:
                    break
                await asyncio.sleep(0.1)
            r["back_healthy_s"] = round(time.monotonic() - t0, 1)
    finally:
        stop.set()
        await probes
        a.close()
        b.close()
    every = [ms for r in rounds for ms in r["failover_ms"]]
    replays = [ms for r in rounds for ms in r["replay_ms"]]
    return {
        "legs": args.legs,
        "kills": args.kills,
        "failover_ms": percentiles(every),
        "replay_ms_per_leg": percentiles(replays),
        "not_moved": sum(r["not_moved"] for r in rounds),
        "gaps_ms": sum(r["gaps_ms"] for r in rounds),
        "failures": sum(len(r["failures"]) for r in rounds),
        "rounds": rounds,
    }


# -- spread --------------------------------------------------------------------------------------


async def run_spread(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], 4: []}
    for _ in range(args.rounds):
        for backends in (1, 4):
            load = argparse.Namespace(
                legs=args.spread_legs, seconds=args.spread_seconds, codec="pcmu",
                backends=backends, stagger_ticks=50, yield_every=0,
            )  # fmt: skip
            r = await bench_legs.run_load(load)
            print(
                f"{backends} backend(s): {r['cpu_us_per_frame']} µs/frame, legs per backend "
                f"{r['legs_per_backend']}, lost {r['samples_lost']}, send p99 "
                f"{r['latency_send_ms'].get('p99')} ms",
                flush=True,
            )
            runs[backends].append(r)
    cost = {n: float(np.median([r["cpu_us_per_frame"] for r in rs])) for n, rs in runs.items()}
    return {
        "legs": args.spread_legs,
        "seconds": args.spread_seconds,
        "cpu_us_per_frame": {f"{n}_backends": round(c, 2) for n, c in cost.items()},
        "cpu_pct_per_leg": {f"{n}_backends": round(c / 200, 3) for n, c in cost.items()},
        "ratio_4_to_1": round(cost[4] / cost[1], 4),
        "samples_lost": sum(r["samples_lost"] for rs in runs.values() for r in rs),
        "legs_per_backend": runs[4][-1]["legs_per_backend"],
        "runs": {f"{n}_backends": [r["cpu_us_per_frame"] for r in rs] for n, rs in runs.items()},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    result: dict[str, Any] = {"bench": "pool", "cpus": os.cpu_count()}
    if "placement" in args.parts:
        result["placement_us"] = run_placement()
        print(f"placement: {result['placement_us']} µs per leg start", flush=True)
    if "failover" in args.parts:
        result["failover"] = await run_failover(args, work)
    if "spread" in args.parts:
        result["spread"] = await run_spread(args)
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default="placement,failover,spread", type=lambda s: set(s.split(",")),
        help="which measurements (default: all three)",
    )  # fmt: skip
    parser.add_argument("--legs", type=int, default=8, help="legs per failover round")
    parser.add_argument("--kills", type=int, default=3, help="failover rounds")
    parser.add_argument("--spread-legs", type=int, default=100)
    parser.add_argument("--spread-seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2, help="spread runs per pool size")
    parser.add_argument("--json", help="also write the JSON result to this file")
    args = parser.parse_args()
    unknown = args.parts - {"placement", "failover", "spread"}
    if unknown or args.legs < 1 or args.kills < 1 or args.spread_legs < 4 or args.rounds < 1:
        parser.error(f"bad arguments (unknown parts: {sorted(unknown) or 'none'})")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(main_async(args))
    line = json.dumps(result)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)


if __name__ == "__main__":
    main()
