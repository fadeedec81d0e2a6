"""The media-fork fuzzers' long run: hostile PBX connections at the fork listeners, with a report.

The CI tests (``tests/integration/test_fork_*.py``) send 10,000 messages per protocol; this
sends as many as you ask, with the same generators (``tests/ingest/fuzz/``) and the same driver
(``tests/integration/forks.py``: 16 connections at a time, then every call taken waited for
until stored as ended, then a good call per path), against the listener started in this process
whose legs stream to ``benchmarks/sink.py`` (the realtime protocol without ASR, so accepted
calls cost no model).  AudioSocket's unit is a frame, the WebSocket protocols' a message.

Run::

    .venv/bin/python benchmarks/fuzz_forks.py --protocol all --messages 100000 [--seed 1000]
        [--max-legs 8] [--json out.json]

It prints a progress line per round (``--round`` messages) on stderr and the report (JSON) on
stdout: per protocol the messages sent, connections, how they ended (close codes, refusal
statuses, resets), calls taken and stored as ended, their end causes, the good calls served,
exceptions escaped (0).  Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # forks.py, as the tests import it

from bench_sip import report, start_sink, stop_process  # noqa: E402
from forks import PROTOCOLS, FuzzRun, fuzz  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402

# The listener settings of the CI tests, per protocol (AudioSocket: short timeouts, so
# connections left open end soon).
EXTRA: dict[str, dict[str, Any]] = {
    "audiosocket": {"start_timeout_s": 1.0, "idle_timeout_s": 1.0},
}
MIN_CALLS = 0  # a long run must take calls; the CI tests hold each protocol to its own minimum


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fuzz-forks-"))
    sink, port = await start_sink(work / "sink.json")
    endpoint = AsrEndpoint(
        url=f"ws://127.0.0.1:{port}/v1/realtime",
        model="sink",
        stall_timeout_s=10,
        max_legs=args.max_legs,
    )
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    reports: dict[str, Any] = {}
    problems: list[str] = []
    started = time.monotonic()
    try:
        for i, protocol in enumerate(protocols):
            report, found = await one_protocol(protocol, args, endpoint, work, args.seed + i)
            reports[protocol] = report
            problems += [f"{protocol}: {p}" for p in found]
    finally:
        await stop_process(sink)
    return {
        "messages_per_protocol": args.messages,
        "max_legs": args.max_legs,
        "seconds": round(time.monotonic() - started, 1),
        "protocols": reports,
        "problems": problems,
    }


async def one_protocol(
    protocol: str, args: argparse.Namespace, endpoint: AsrEndpoint, work: Path, seed: int
) -> tuple[dict[str, Any], list[str]]:
    started = time.monotonic()
    rounds = [0]

    def progress(run: FuzzRun) -> None:
        if run.messages // args.round > rounds[0] or run.messages >= args.messages:
            rounds[0] = run.messages // args.round
            print(
                f"[fuzz-forks] {protocol} seed {seed}: {run.messages} sent over "
                f"{run.connections} connections, {len(run.escaped)} escaped, "
                f"{len(run.failures)} unhandled, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )

    result = await fuzz(
        protocol,
        work / f"{protocol}.db",
        endpoint,
        seed=seed,
        messages=args.messages,
        concurrency=args.concurrency,
        progress=progress,
        **EXTRA.get(protocol, {}),
    )
    # A long run's wall time grows with --messages: bound it by the CI's rate (10,000 in 240 s).
    within_s = max(240.0, 240.0 * args.messages / 10_000)
    found = result.problems(min_calls=MIN_CALLS, within_s=within_s)
    print(
        f"[fuzz-forks] {protocol}: {result.stored} calls stored, "
        f"{result.stored - (result.unended or 0)} of them ended, "
        f"{len(result.served)} of {result.good} good calls served, "
        f"{'ok' if not found else '; '.join(found)}",
        file=sys.stderr,
    )
    return result.report(), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "all"], default="all")
    parser.add_argument("--messages", type=int, default=100_000, help="per protocol")
    parser.add_argument("--seed", type=int, default=1000, help="the first protocol's; +1 each")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-legs", type=int, default=8, help="ASR capacity: then 503s")
    parser.add_argument("--round", type=int, default=5000, help="messages per progress line")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    return report(asyncio.run(run(args)), args.json)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
