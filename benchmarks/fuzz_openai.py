"""The OpenAI-dialect fuzzers' long run (both sides, in-process, no sockets): the CI tests
(``tests/engine/test_openai_fuzz.py``) try 300 frame sequences per side; this tries as many as
you ask with the same generators, and reports how many and how long.

Run::

    .venv/bin/python benchmarks/fuzz_openai.py [--examples 20000] [--seed 1]

Exit status 1 (with hypothesis's minimal failing example on stderr) if either side broke its
rule: the engine's server protocol raised or sent something that is not an OpenAI event, or the
client raised anything but ``AsrProtocolError``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests.engine import test_openai_fuzz as fuzz  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="sequences per side")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = {}
    for name, test, strategy in (
        ("engine", fuzz.test_the_engine_answers_anything_with_openai_events, fuzz.ENGINE_FRAMES),
        ("client", fuzz.test_the_client_raises_only_protocol_errors, fuzz.CLIENT_STEPS),
    ):
        inner = test.hypothesis.inner_test  # type: ignore[attr-defined]
        run = seed(args.seed)(
            settings(
                max_examples=args.examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(inner))
        )
        started = time.monotonic()
        run()
        report[name] = {"sequences": args.examples, "seconds": round(time.monotonic() - started, 1)}
        print(f"{name}: {args.examples} sequences, no rule broken", file=sys.stderr)
    print(json.dumps({"fuzz": "openai", "seed": args.seed, **report}))


if __name__ == "__main__":
    main()
