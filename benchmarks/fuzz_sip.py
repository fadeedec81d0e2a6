"""The SIP fuzzer's long run: 100,000+ hostile requests at a running worker, with a report.

The CI test (``tests/integration/test_sip_hostile.py``) sends 2,000; this sends as many as you
ask, in rounds with a new seed each, at one SIP worker behind :class:`bridge.sip.ingest.SipIngest`
whose legs stream to ``benchmarks/sink.py`` (the realtime protocol without ASR, so accepted
fuzz calls cost no model).  After every round it checks that the worker process is the same
one (never died, never restarted) and at the end that every call it took was stored as ended.

Run::

    .venv/bin/python benchmarks/fuzz_sip.py --messages 100000 [--concurrency 16] [--json out.json]

It prints a progress line per round on stderr and the report (JSON) on stdout: requests sent
per kind, answered, unanswered that must be (0), statuses, slowest final, worker crashes (0),
calls taken and stored.  Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sip import report, start_sink  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.sip.ingest import SipIngest  # noqa: E402
from sip_config import SipSettings  # noqa: E402
from storage import TranscriptStore  # noqa: E402
from tests.sip.fuzz import RawUac, Report, campaign  # noqa: E402
from tests.sip.sipp import free_port, free_port_block  # noqa: E402

ROUND = 5000  # requests per round (one seed each)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fuzz-sip-"))
    # The sink's own limit must outlast the run (about 80 messages/s).
    sink, port = await start_sink(
        work / "sink.json", "--max-seconds", str(args.messages / 20 + 600)
    )
    rtp = free_port_block(64)
    settings = SipSettings(
        port=free_port(),
        transports=("udp", "tcp"),
        rtp_port_min=rtp,
        rtp_port_max=rtp + 63,
        codecs=("PCMU", "PCMA"),
        rtp_timeout_s=5,  # fuzz calls whose BYE got lost end soon
    )
    endpoint = AsrEndpoint(url=f"ws://127.0.0.1:{port}/v1/realtime", model="sink")
    totals = Report()
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    started = time.monotonic()
    try:
        async with await TranscriptStore.open(work / "fuzz.db") as store:
            ingest = SipIngest(settings, store=store, endpoint=endpoint)
            await ingest.start()
            worker = ingest.workers[0]
            assert worker.process is not None
            pid = worker.process.pid
            try:
                seed = args.seed
                while totals.sent < args.messages:
                    uac = RawUac("127.0.0.1", settings.port, answer_timeout_s=3.0)
                    await uac.start()
                    try:
                        report = await campaign(
                            uac,
                            seed=seed,
                            messages=min(ROUND, args.messages - totals.sent),
                            concurrency=args.concurrency,
                        )
                    finally:
                        await uac.close()
                    for outcome in report.unanswered:  # say which at once: a long run may die
                        print(
                            f"[fuzz-sip] seed {seed}: unanswered over {outcome.transport}: "
                            f"{outcome.case.mutations}",
                            file=sys.stderr,
                        )
                    merge(totals, report)
                    statuses.update(report.statuses)
                    alive = worker.process is not None and worker.process.pid == pid
                    alive = alive and worker.process.returncode is None and worker.restarts == 0
                    print(
                        f"[fuzz-sip] seed {seed}: {totals.sent} sent, "
                        f"{len(totals.unanswered)} unanswered, worker "
                        f"{'alive' if alive else 'DIED'}, {time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                    )
                    if not alive:
                        problems.append(f"the worker died during seed {seed}")
                        break
                    seed += 1
                calls = await until_all_ended(store, len(totals.calls))
            finally:
                await ingest.close()
    finally:
        if sink.returncode is None:
            sink.terminate()
        await sink.wait()
    summary = totals.summary()
    summary["statuses"] = dict(sorted(statuses.items()))
    summary["calls_taken"] = len(totals.calls)
    summary["calls_stored_ended"] = calls
    summary["worker_crashes"] = 0 if not problems else 1
    summary["unanswered_examples"] = [
        {"transport": o.transport, "mutations": o.case.mutations} for o in totals.unanswered[:20]
    ]
    if totals.unanswered:
        problems.append(f"{len(totals.unanswered)} requests that must be answered were not")
    if calls < len(totals.calls):
        problems.append(f"{len(totals.calls) - calls} taken calls not stored as ended")
    summary["problems"] = problems
    return summary


def merge(into: Report, report: Report) -> None:
    into.sent += report.sent
    into.answered += report.answered
    into.must_answer += report.must_answer
    into.unanswered += report.unanswered
    into.mutations.update(report.mutations)
    into.in_dialog_sent += report.in_dialog_sent
    into.in_dialog_unanswered += report.in_dialog_unanswered
    into.seconds += report.seconds
    into.final_s += report.final_s
    into.calls += report.calls
    if report.slowest_s >= into.slowest_s:
        into.slowest_s, into.slowest = report.slowest_s, report.slowest


async def until_all_ended(store: TranscriptStore, taken: int, timeout_s: float = 120) -> int:
    """How many calls are stored and ended, once none is active (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await store.list_calls(limit=10_000_000)
        if not any(r.active for r in records) or time.monotonic() > deadline:
            return sum(1 for r in records if not r.active)
        await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    return report(asyncio.run(run(args)), args.json)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
