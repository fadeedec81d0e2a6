"""The RTP fuzzer's long run: the properties of ``tests/sip/test_rtp_fuzz.py`` with many more
examples (any datagrams, any order, any source; the receiver never raises, its leg clock only
moves forward and never runs away, a stranger's packet is never taken).

Run::

    .venv/bin/python benchmarks/fuzz_rtp.py --examples 20000

Prints a JSON report (examples and datagrams tried per property, failures: 0); exits 1 on the
first failing example, which hypothesis prints shrunk.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bridge.sip.rtp import SourceLatch  # noqa: E402
from tests.sip.test_rtp_fuzz import (  # noqa: E402
    CALLER,
    G722,
    PCMU,
    STRANGER_IPS,
    arrivals,
    check_stream,
    sources,
)


def receiver_property(fmt: Any, counts: dict[str, int], examples: int) -> Callable[[], None]:
    """The receiver's property for one payload format, counting what it tried."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(arrivals)
    def stream(arrived: list[tuple[bytes, float, bool]]) -> None:
        counts["examples"] += 1
        counts["datagrams"] += len(arrived)
        check_stream(fmt, arrived)

    return stream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    report: dict[str, dict[str, float]] = {}
    for name, fmt in (("pcmu", PCMU), ("g722", G722)):
        counts = {"examples": 0, "datagrams": 0}
        started = time.monotonic()
        receiver_property(fmt, counts, args.examples)()
        report[f"receiver_{name}"] = {**counts, "seconds": round(time.monotonic() - started, 1)}

    counts = {"examples": 0, "packets": 0}

    @settings(max_examples=args.examples, deadline=None, database=None)
    @given(st.lists(st.tuples(sources, st.floats(0.0, 2.0)), min_size=1, max_size=60))
    def latch(packets: list[tuple[tuple[str, int], float]]) -> None:
        counts["examples"] += 1
        counts["packets"] += len(packets)
        stream = SourceLatch(CALLER, lambda ip: ip == "192.0.2.11")
        now = 0.0
        for source, gap_s in packets:
            now += gap_s
            taken = stream.accept(source, now)
            assert not (taken and source[0] in STRANGER_IPS)

    started = time.monotonic()
    latch()
    report["source_latch"] = {**counts, "seconds": round(time.monotonic() - started, 1)}
    report["failures"] = {"count": 0}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
