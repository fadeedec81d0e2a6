"""Benchmark of the embedded speech engine: the run and its report.

Run by hand (not in tests), on an otherwise idle machine if you can::

    python -m bridge.engine.bench [--model base] [--legs 1,2,3] [--duty 1,0.5] [--json out.json]

Needs Debian ``flite`` and ``sox`` for the speech.  Prints one JSON object:

* ``rtf``: wall time / audio time for one leg streamed as fast as possible;
* ``wer_clean`` / ``wer_mulaw``: word error rate of flite sentences, clean and after G.711 µ-law;
* ``legs``: for N concurrent legs streamed in real time (``duty`` 1: every leg speaks all the
  time, 0.8 s between sentences, the worst case; 0.5: a conversation, each sentence followed by
  as much silence), the lag of deltas behind the audio (p50/p95/max s) and whether it stayed
  bounded (``real_time``), the delay from a word being spoken to the delta carrying it (p50/p95
  s) and RSS;
* ``rss_mb``: after loading the model (per engine), and the growth per extra leg;
* ``cpu_s_per_leg_s``: CPU seconds (all threads, client included) per second of leg audio.

Delays, from a word being spoken to the delta carrying it: ``spoken_delay`` for every word,
its end taken from Whisper's alignment of the sentence decoded on its own (~0.1 s); and
``end_word_delay`` for the last word of each sentence, whose end is exact (where flite's audio
ends).  ``word_delay`` is the older estimate from the time read back from the step clock (the
word's *start* with the default ``start`` anchor, so it includes the word's length).

The pieces: ``client.py`` streams an utterance, ``bench_speech.py`` makes the sentences and
scores WER, ``bench_metrics.py`` turns delta arrivals into lags and delays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bridge.core.step_clock import SAMPLE_RATE_HZ, StepClock
from bridge.engine.bench_metrics import (
    delta_lags,
    lag_growth,
    percentile,
    rss_mb,
    spoken_delays,
    word_delays,
)
from bridge.engine.bench_speech import make_material, mulaw, pcm16, time_words, word_error_rate
from bridge.engine.client import StreamResult, stream_utterance
from bridge.engine.config import EngineConfig
from bridge.engine.recognizer import Recognizer

__all__ = ["StreamResult", "main", "stream_utterance", "word_error_rate"]


def _load(config: EngineConfig, args: argparse.Namespace) -> Recognizer:
    from bridge.engine.server import load_recognizer

    extra: dict[str, object] = {"full_encoder": args.full_encoder}
    if args.max_window_ms:
        extra["max_window_ms"] = args.max_window_ms
    return load_recognizer(config, **extra)


async def _bench(args: argparse.Namespace) -> dict[str, object]:
    from bridge.engine.config import EngineConfig
    from bridge.engine.server import start_engine_server

    defaults = EngineConfig()
    config = EngineConfig(
        model=args.model,
        language="en",
        max_legs=64,
        cpu_threads=defaults.cpu_threads if args.threads is None else args.threads,
        decode_workers=args.workers or defaults.decode_workers,
        decode_interval_ms=args.interval_ms or defaults.decode_interval_ms,
    )
    report: dict[str, object] = {
        "model": args.model,
        "cores": len(_cpus()),
        "threads": config.cpu_threads,
        "workers": config.decode_workers,
        "decode_interval_ms": config.decode_interval_ms,
        "full_encoder": args.full_encoder,
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
    }
    rss0 = rss_mb()
    t0 = time.monotonic()
    recognizer = await asyncio.to_thread(_load, config, args)
    report["load_s"] = round(time.monotonic() - t0, 2)
    report["rss_engine_mb"] = round(rss_mb() - rss0, 1)
    engine = await start_engine_server(config, recognizer=recognizer)
    clock = StepClock(config.transcription_delay_ms)
    try:
        material = make_material()
        seconds = material.audio.size / SAMPLE_RATE_HZ
        report["audio_s"] = round(seconds, 2)
        t0 = time.monotonic()
        clean = await stream_utterance(engine.url, engine.model, pcm16(material.audio))
        report["rtf"] = round((time.monotonic() - t0) / seconds, 3)
        report["wer_clean"] = round(word_error_rate(material.reference, clean.text), 4)
        law = await stream_utterance(engine.url, engine.model, pcm16(mulaw(material.audio)))
        report["wer_mulaw"] = round(word_error_rate(material.reference, law.text), 4)
        report["text_clean"] = clean.text
        legs_report = []
        for duty, n in [(duty, n) for duty in args.duty for n in args.legs]:
            leg_material = material if duty >= 1.0 else make_material(duty=duty)
            seconds = leg_material.audio.size / SAMPLE_RATE_HZ
            pcm = pcm16(leg_material.audio)
            rss_before = rss_mb()
            cpu_before = time.process_time()
            stats = dict(getattr(recognizer, "stats", {}))
            # Legs start 0.25 s apart (continuous) or spread over a sentence (conversation).
            stagger = 0.25 if duty >= 1.0 else 3.0 / max(1, n - 1)
            results = await asyncio.gather(
                *(_staggered(i * stagger, engine.url, engine.model, pcm) for i in range(n))
            )
            lags = [lag for r in results for lag in delta_lags(r, clock)]
            tail = [lag for r in results for lag in delta_lags(r, clock)[-40:]]
            delays = [d for r in results for d in word_delays(r, clock)]
            ends = leg_material.word_ends_ms
            end_delays = [d for r in results for d in spoken_delays(r, ends, clock, lookahead=1000)]
            if not leg_material.all_word_ends_ms:
                time_words(leg_material, recognizer)
            every = leg_material.all_word_ends_ms
            spoken = [d for r in results for d in spoken_delays(r, every, clock)]
            slope = max(lag_growth(r, clock) for r in results)
            cpu_per_leg = (time.process_time() - cpu_before) / (n * seconds)
            after = getattr(recognizer, "stats", {})
            decodes = after.get("decodes", 0) - stats.get("decodes", 0)
            finals = after.get("final_decodes", 0) - stats.get("final_decodes", 0)
            wall = after.get("decode_wall_s", 0.0) - stats.get("decode_wall_s", 0.0)
            wers = [word_error_rate(material.reference, r.text) for r in results]
            legs_report.append(
                {
                    "legs": n,
                    "duty": duty,
                    "lag_p50_s": round(percentile(lags, 0.5), 2),
                    "lag_p95_s": round(percentile(lags, 0.95), 2),
                    "lag_max_s": round(max(lags), 2),
                    "lag_last_40_steps_max_s": round(max(tail), 2),
                    "lag_growth_s_per_s": round(slope, 3),
                    # Sustained: the lag does not keep growing (< 1 s per 30 s of audio).
                    "real_time": slope < 0.033 and max(tail) < 4.0,
                    # Spoken (end of each word, from Whisper's alignment) to delta, s.
                    "spoken_delay_p50_s": round(percentile(spoken, 0.5), 2),
                    "spoken_delay_p95_s": round(percentile(spoken, 0.95), 2),
                    "spoken_delay_max_s": round(max(spoken, default=float("nan")), 2),
                    "words_timed": len(spoken),
                    "word_delay_p50_s": round(percentile(delays, 0.5), 2),
                    "word_delay_p95_s": round(percentile(delays, 0.95), 2),
                    "end_word_delay_p50_s": round(percentile(end_delays, 0.5), 2),
                    "end_word_delay_p95_s": round(percentile(end_delays, 0.95), 2),
                    "end_word_delay_max_s": round(max(end_delays, default=float("nan")), 2),
                    "end_words_timed": len(end_delays),
                    "wer_mean": round(statistics.mean(wers), 4),
                    # CPU seconds (all threads) per second of a leg's audio.
                    "cpu_s_per_leg_s": round(cpu_per_leg, 3),
                    "decodes_per_leg_s": round(decodes / (n * seconds), 3),
                    "closing_decodes_per_leg_s": round(finals / (n * seconds), 3),
                    "decode_wall_s_mean": round(wall / max(1, decodes), 3),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "rss_growth_mb": round(rss_mb() - rss_before, 1),
                }
            )
            print(json.dumps(legs_report[-1]), file=sys.stderr, flush=True)
        report["legs"] = legs_report
        report["rss_total_mb"] = round(rss_mb(), 1)
    finally:
        await engine.close()
    return report


async def _staggered(delay_s: float, url: str, model: str, audio: bytes) -> StreamResult:
    await asyncio.sleep(delay_s)
    return await stream_utterance(url, model, audio, realtime=True, timeout_s=300)


def _cpus() -> set[int]:
    return os.sched_getaffinity(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.engine.bench")
    parser.add_argument("--model", default="base")
    parser.add_argument("--legs", default="1,2,3", help="comma-separated leg counts")
    parser.add_argument(
        "--duty", default="1", help="speech duty cycles, comma-separated (1: continuous)"
    )
    parser.add_argument("--threads", type=int, help="CTranslate2 threads (0: all)")
    parser.add_argument("--workers", type=int, help="parallel decodes")
    parser.add_argument("--interval-ms", type=int, help="partial decode interval")
    parser.add_argument("--max-window-ms", type=int, help="longest window before a cut")
    parser.add_argument(
        "--full-encoder", action="store_true", help="pad every window to 30 s (the old way)"
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    args.legs = [int(n) for n in args.legs.split(",") if n]
    args.duty = [float(d) for d in args.duty.split(",") if d]
    for tool in ("flite", "sox"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install flite sox)", file=sys.stderr)
            return 2
    report = asyncio.run(_bench(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
