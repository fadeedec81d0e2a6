"""Benchmark of the embedded speech engine, plus the small client it (and the tests) use.

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

Word times read back from the step clock exactly as the bridge does: delta ``k`` (0-based)
ends at ``first_step_ms + 80 k`` of audio and describes audio one delay earlier.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import connect

from bridge.core.step_clock import SAMPLE_RATE_HZ, StepClock
from bridge.core.step_clock import STEP_SAMPLES as CHUNK_SAMPLES
from bridge.engine.config import EngineConfig
from bridge.engine.recognizer import Recognizer

__all__ = ["StreamResult", "stream_utterance", "word_error_rate"]


@dataclass
class StreamResult:
    deltas: list[str] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)  # monotonic, per delta
    done: dict[str, object] | None = None
    errors: list[dict[str, object]] = field(default_factory=list)
    started_s: float = 0.0  # monotonic time of the first append
    chunk_sent_s: list[float] = field(default_factory=list)  # per 80 ms chunk

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    def word_times_ms(self, delay_ms: int = 480) -> list[tuple[str, float]]:
        """Each word of the deltas with its time read back from the step clock."""
        clock = StepClock(delay_ms)
        first_ms = clock.first_step_samples * 1000 / SAMPLE_RATE_HZ
        words: list[tuple[str, float]] = []
        for k, delta in enumerate(self.deltas):
            for i, word in enumerate(delta.split(" ")):
                if not word:
                    continue
                if i == 0 and not delta.startswith(" ") and words:
                    words[-1] = (words[-1][0] + word, words[-1][1])  # continues a word
                    continue
                words.append((word, first_ms + 80 * k - delay_ms))
        return words


async def stream_utterance(
    url: str,
    model: str,
    pcm16: bytes,
    *,
    realtime: bool = False,
    headers: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> StreamResult:
    """One utterance over ``/v1/realtime``: update, commit, 80 ms appends, final, until done."""
    result = StreamResult()
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created", created
        await ws.send(json.dumps({"type": "session.update", "model": model}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "transcription.delta":
                    result.deltas.append(event["delta"])
                    result.arrivals_s.append(time.monotonic())
                elif event["type"] == "transcription.done":
                    result.done = event
                    return
                else:
                    result.errors.append(event)
                    return

        receiver = asyncio.create_task(receive())
        result.started_s = start = time.monotonic()
        step_bytes = CHUNK_SAMPLES * 2
        for n, i in enumerate(range(0, len(pcm16), step_bytes)):
            if realtime:
                await asyncio.sleep(max(0.0, start + n * 0.08 - time.monotonic()))
            audio = base64.b64encode(pcm16[i : i + step_bytes]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            result.chunk_sent_s.append(time.monotonic())
            if receiver.done():
                break
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
        await asyncio.wait_for(receiver, timeout_s)
    return result


# --------------------------------------------------------------------------- speech


def _flite(text: str, voice: str) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True)
        with wave.open(str(out)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    loud = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[loud[0] : loud[-1] + 1]


def _mulaw(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory() as tmp:
        src, law, back = (Path(tmp) / n for n in ("in.wav", "law.wav", "back.wav"))
        with wave.open(str(src), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE_HZ)
            wav.writeframes(_pcm16(audio))
        subprocess.run(
            ["sox", str(src), "-r", "8000", "-e", "mu-law", "-b", "8", str(law)], check=True
        )
        subprocess.run(
            ["sox", str(law), "-r", "16000", "-e", "signed", "-b", "16", str(back)], check=True
        )
        with wave.open(str(back)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    out = pcm.astype(np.float32) / 32768.0
    return np.pad(out, (0, max(0, audio.size - out.size)))[: audio.size]


def _pcm16(audio: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


SENTENCES = [
    "Hello, this is Alice from the billing department.",
    "I am calling about your invoice from March.",
    "The payment was received last week, but the amount was wrong.",
    "Could you please confirm your account details?",
    "We can send a new copy to your email address today.",
    "Thank you for your patience, and have a nice afternoon.",
    "The technician will arrive tomorrow morning before lunch.",
    "Please let us know if anything else is missing from the order.",
]


@dataclass
class Material:
    audio: npt.NDArray[np.float32]
    reference: str
    word_ends_ms: list[tuple[str, float]]  # the last word of each sentence and its end
    sentences: list[tuple[int, npt.NDArray[np.float32]]] = field(default_factory=list)
    # Every word and its end, from the recognizer's offline alignment (``time_words``).
    all_word_ends_ms: list[tuple[str, float]] = field(default_factory=list)


def make_material(voice: str = "slt", gap_s: float = 0.8, duty: float = 1.0) -> Material:
    """The sentences with ``gap_s`` between them, or (``duty`` < 1) speech that fraction of time."""
    parts = [np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)]
    at = SAMPLE_RATE_HZ
    ends: list[tuple[str, float]] = []
    sentences = []
    for sentence in SENTENCES:
        audio = _flite(sentence, voice)
        sentences.append((at, audio))
        parts.append(audio)
        at += audio.size
        ends.append((_norm(sentence).split()[-1], at * 1000 / SAMPLE_RATE_HZ))
        silence_s = gap_s if duty >= 1.0 else audio.size / SAMPLE_RATE_HZ * (1 / duty - 1)
        gap = np.zeros(int(silence_s * SAMPLE_RATE_HZ), dtype=np.float32)
        parts.append(gap)
        at += gap.size
    return Material(np.concatenate(parts), " ".join(SENTENCES), ends, sentences)


def time_words(material: Material, recognizer: Recognizer) -> None:
    """Fill ``all_word_ends_ms``: each sentence decoded on its own, words aligned by Whisper."""
    transcribe = getattr(recognizer, "transcribe", None)
    if transcribe is None:
        return
    pad = np.zeros(SAMPLE_RATE_HZ // 5, dtype=np.float32)
    for at, audio in material.sentences:
        words, _, _ = transcribe(np.concatenate([pad, audio, pad]), language="en", prompt=None)
        for text, _start_s, end_s in words:
            for part in _norm(text).split():
                end_ms = (at - pad.size) * 1000 / SAMPLE_RATE_HZ + end_s * 1000
                material.all_word_ends_ms.append((part, end_ms))


_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip


def _norm(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d", lambda m: f" {_NUMBERS[m.group()]} ", text)
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words / reference words (lower-cased, no punctuation)."""
    ref, hyp = _norm(reference).split(), _norm(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


# --------------------------------------------------------------------------- measurements


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _lags(result: StreamResult, clock: StepClock) -> list[float]:
    """Per delta: arrival minus the time its last audio chunk was sent (realtime streams)."""
    lags = []
    for k, arrival in enumerate(result.arrivals_s):
        chunk = (clock.step_end_samples(k) - 1) // CHUNK_SAMPLES
        if chunk < len(result.chunk_sent_s):
            lags.append(arrival - result.chunk_sent_s[chunk])
    return lags


def _word_delays(result: StreamResult, clock: StepClock) -> list[float]:
    """Per text delta: arrival minus when the audio of its word's end was sent.

    With the ``end`` anchor a word lands on the first step ending at or after its end + delay,
    so the word ended at ``step_end - delay`` of audio (within 80 ms).
    """
    delays = []
    for k, delta in enumerate(result.deltas):
        if not delta.strip():
            continue
        chunk = (clock.step_end_samples(k) - clock.delay_samples) // CHUNK_SAMPLES
        if chunk < len(result.chunk_sent_s):
            delays.append(result.arrivals_s[k] - result.chunk_sent_s[chunk])
    return delays


def _spoken_delays(
    result: StreamResult,
    word_ends_ms: list[tuple[str, float]],
    clock: StepClock,
    *,
    lookahead: int = 6,
) -> list[float]:
    """Per word: arrival of the delta carrying it minus when the audio of its end was sent.

    Words are matched in order (each within the next ``lookahead`` words heard); a word that
    was misrecognized is left out.
    """
    placed: list[tuple[str, int]] = []  # (normalized word, delta index) in spoken order
    for k, delta in enumerate(result.deltas):
        for i, word in enumerate(delta.split(" ")):
            if not word:
                continue
            if i == 0 and not delta.startswith(" ") and placed:
                placed[-1] = (placed[-1][0] + word, placed[-1][1])
                continue
            placed.append((word, k))
    normalized = [(_norm(word), k) for word, k in placed]
    delays = []
    at = 0
    for word, end_ms in word_ends_ms:
        chunk = int(end_ms * SAMPLE_RATE_HZ / 1000) // CHUNK_SAMPLES
        # The first occurrence heard near (not long before) the word's end; the step carrying a
        # word may end a little before its true end (``start`` anchor, recognizer's own ends).
        for j in range(at, min(len(normalized), at + lookahead)):
            text, k = normalized[j]
            near = clock.step_end_samples(k) + SAMPLE_RATE_HZ >= chunk * CHUNK_SAMPLES
            if word in text.split() and near:
                if chunk < len(result.chunk_sent_s):
                    delays.append(result.arrivals_s[k] - result.chunk_sent_s[chunk])
                at = j + 1
                break
    return delays


def _slope(result: StreamResult, clock: StepClock) -> float:
    """Least-squares growth of the lag, seconds per second of audio (0: steady)."""
    lags = _lags(result, clock)
    if len(lags) < 10:
        return 0.0
    xs = np.arange(len(lags)) * 0.08
    return float(np.polyfit(xs, np.array(lags), 1)[0])


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
    rss0 = _rss_mb()
    t0 = time.monotonic()
    recognizer = await asyncio.to_thread(_load, config, args)
    report["load_s"] = round(time.monotonic() - t0, 2)
    report["rss_engine_mb"] = round(_rss_mb() - rss0, 1)
    engine = await start_engine_server(config, recognizer=recognizer)
    clock = StepClock(config.transcription_delay_ms)
    try:
        material = make_material()
        seconds = material.audio.size / SAMPLE_RATE_HZ
        report["audio_s"] = round(seconds, 2)
        t0 = time.monotonic()
        clean = await stream_utterance(engine.url, engine.model, _pcm16(material.audio))
        report["rtf"] = round((time.monotonic() - t0) / seconds, 3)
        report["wer_clean"] = round(word_error_rate(material.reference, clean.text), 4)
        law = await stream_utterance(engine.url, engine.model, _pcm16(_mulaw(material.audio)))
        report["wer_mulaw"] = round(word_error_rate(material.reference, law.text), 4)
        report["text_clean"] = clean.text
        legs_report = []
        for duty, n in [(duty, n) for duty in args.duty for n in args.legs]:
            leg_material = material if duty >= 1.0 else make_material(duty=duty)
            seconds = leg_material.audio.size / SAMPLE_RATE_HZ
            pcm = _pcm16(leg_material.audio)
            rss_before = _rss_mb()
            cpu_before = time.process_time()
            stats = dict(getattr(recognizer, "stats", {}))
            # Legs start 0.25 s apart (continuous) or spread over a sentence (conversation).
            stagger = 0.25 if duty >= 1.0 else 3.0 / max(1, n - 1)
            results = await asyncio.gather(
                *(_staggered(i * stagger, engine.url, engine.model, pcm) for i in range(n))
            )
            lags = [lag for r in results for lag in _lags(r, clock)]
            tail = [lag for r in results for lag in _lags(r, clock)[-40:]]
            delays = [d for r in results for d in _word_delays(r, clock)]
            ends = leg_material.word_ends_ms
            end_delays = [
                d for r in results for d in _spoken_delays(r, ends, clock, lookahead=1000)
            ]
            if not leg_material.all_word_ends_ms:
                time_words(leg_material, recognizer)
            every = leg_material.all_word_ends_ms
            spoken_delays = [d for r in results for d in _spoken_delays(r, every, clock)]
            slope = max(_slope(r, clock) for r in results)
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
                    "lag_p50_s": round(_pct(lags, 0.5), 2),
                    "lag_p95_s": round(_pct(lags, 0.95), 2),
                    "lag_max_s": round(max(lags), 2),
                    "lag_last_40_steps_max_s": round(max(tail), 2),
                    "lag_growth_s_per_s": round(slope, 3),
                    # Sustained: the lag does not keep growing (< 1 s per 30 s of audio).
                    "real_time": slope < 0.033 and max(tail) < 4.0,
                    # Spoken (end of each word, from Whisper's alignment) to delta, s.
                    "spoken_delay_p50_s": round(_pct(spoken_delays, 0.5), 2),
                    "spoken_delay_p95_s": round(_pct(spoken_delays, 0.95), 2),
                    "spoken_delay_max_s": round(max(spoken_delays, default=float("nan")), 2),
                    "words_timed": len(spoken_delays),
                    "word_delay_p50_s": round(_pct(delays, 0.5), 2),
                    "word_delay_p95_s": round(_pct(delays, 0.95), 2),
                    "end_word_delay_p50_s": round(_pct(end_delays, 0.5), 2),
                    "end_word_delay_p95_s": round(_pct(end_delays, 0.95), 2),
                    "end_word_delay_max_s": round(max(end_delays, default=float("nan")), 2),
                    "end_words_timed": len(end_delays),
                    "wer_mean": round(statistics.mean(wers), 4),
                    # CPU seconds (all threads) per second of a leg's audio.
                    "cpu_s_per_leg_s": round(cpu_per_leg, 3),
                    "decodes_per_leg_s": round(decodes / (n * seconds), 3),
                    "closing_decodes_per_leg_s": round(finals / (n * seconds), 3),
                    "decode_wall_s_mean": round(wall / max(1, decodes), 3),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "rss_growth_mb": round(_rss_mb() - rss_before, 1),
                }
            )
            print(json.dumps(legs_report[-1]), file=sys.stderr, flush=True)
        report["legs"] = legs_report
        report["rss_total_mb"] = round(_rss_mb(), 1)
    finally:
        await engine.close()
    return report


async def _staggered(delay_s: float, url: str, model: str, pcm16: bytes) -> StreamResult:
    await asyncio.sleep(delay_s)
    return await stream_utterance(url, model, pcm16, realtime=True, timeout_s=300)


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
