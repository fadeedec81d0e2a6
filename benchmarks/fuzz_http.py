"""The HTTP fuzzer's long run (by hand): every route, for as long as asked, then a report.

    .venv/bin/python benchmarks/fuzz_http.py [--seconds 300] [--examples-per-round 200]
        [--json FILE]

The same bridge, strategies and rules as CI's short run (``tests/http/test_fuzz_http.py``): a
real uvicorn server over a real SQLite file, seeded with two calls and one open WHIP session;
hypothesis draws requests per route (query parameters, headers, tokens, bodies: WAV uploads,
WHIP SDP offers and trickle fragments mutated line by line, WebSocket handshakes, static paths,
unknown routes) in rounds of ``--examples-per-round`` per route, a new seed each round, until
``--seconds`` are spent.  Nothing stops at the first problem: every 5xx (but 503) and every body
holding a server path or source is counted and the first examples per route are printed.

Report: inputs tried per route and their statuses, 5xx, leaked paths, and the latency of
``GET /health`` (polled every 25 ms on its own connection during the whole run): p50, p99, max.
Exit status 1 if any problem was found.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http.test_fuzz_http import NO_ANSWER, UNSENDABLE, run_for  # noqa: E402

LABELS = {UNSENDABLE: "unsendable", NO_ANSWER: "no answer"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--examples-per-round", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    started = time.monotonic()

    def progress(n: int) -> None:
        print(f"round {n} done at {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="fuzz-http-") as folder:
        tally, probe = run_for(
            Path(folder) / "bridge.db",
            args.seconds,
            examples_per_round=args.examples_per_round,
            on_round=progress,
        )
    elapsed = time.monotonic() - started
    latencies = sorted(probe.latencies)
    p50 = statistics.median(latencies) if latencies else 0.0
    p99 = probe.p99()
    total = sum(tally.tried.values())
    errors = {
        r: sum(1 for p in ps if p[0].startswith("HTTP 5")) for r, ps in tally.problems.items()
    }
    leaks = {r: sum(1 for p in ps if p[0].startswith("leaks")) for r, ps in tally.problems.items()}
    other = {
        r: sum(1 for p in ps if not p[0].startswith(("HTTP 5", "leaks")))
        for r, ps in tally.problems.items()
    }

    print(f"\nHTTP fuzz: {total} inputs over {elapsed:.0f} s, {len(tally.tried)} routes\n")
    print(f"{'route':32} {'inputs':>7} {'5xx':>5} {'leaks':>5}  statuses")
    for route, n in tally.tried.items():
        statuses = tally.statuses[route]
        shown = ", ".join(f"{LABELS.get(s, s)}: {c}" for s, c in sorted(statuses.items()))
        fives = sum(c for s, c in statuses.items() if s >= 500 and s != 503)
        print(f"{route:32} {n:>7} {fives:>5} {leaks.get(route, 0):>5}  {shown}")
    print(
        f"\n/health during the run: {len(latencies)} polls, {probe.failures} failed, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(latencies, default=0) * 1000:.1f} ms"
    )
    if tally.notes:
        print("\nnot against the rules, but worth a look:")
        for route, count in tally.notes.items():
            print(f"  {route}: {count} inputs")
            for note, req in tally.note_examples[route][:3]:
                print(f"    {note}: {req.method} {req.target[:100]}... ({len(req.target)} bytes)")
    problems = sum(len(ps) for ps in tally.problems.values())
    if problems:
        print("\nproblems (first examples per route):")
        for route, found in tally.problems.items():
            for problem, req, status, body in found[:5]:
                print(f"  {route}: {problem}: {req.method} {req.target[:200]} -> {status}")
                print(f"    headers {req.headers!r:.200} body {req.body[:120]!r}")
                print(f"    answer {body[:300]!r}")
    else:
        print("\nno 5xx, no leaked paths")
    figures = {
        "seconds": round(elapsed, 1),
        "inputs": dict(tally.tried),
        "inputs_total": total,
        "statuses": {r: {str(k): v for k, v in c.items()} for r, c in tally.statuses.items()},
        "http_5xx": sum(errors.values()),
        "leaks": sum(leaks.values()),
        "other_problems": sum(other.values()),
        "no_answer": dict(tally.notes),
        "health_polls": len(latencies),
        "health_failures": probe.failures,
        "health_p50_ms": round(p50 * 1000, 2),
        "health_p99_ms": round(p99 * 1000, 2),
        "health_max_ms": round(max(latencies, default=0) * 1000, 2),
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
