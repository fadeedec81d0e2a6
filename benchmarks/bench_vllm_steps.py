"""Step rate of the REAL vLLM realtime server (CPU, tiny Voxtral) over a long leg, with and
without session recycling.

Run by hand (not in tests), from the repository root, after ``bash .ci/setup-vllm.sh``::

    .venv/bin/python benchmarks/bench_vllm_steps.py [--audio-s 600] [--runs norecycle,recycle]

It starts one ``VllmServer(max_model_len=8192)`` (``tests/integration/vllm_server.py``; 10 minutes
in one generation need 7500 + 39 prompt + 17 padding tokens) and streams ``--audio-s`` seconds of
audio through one real ``Leg`` per run, as fast as the server allows: 20 ms PCM16 16 kHz frames,
and about once per second of audio fed ``await leg.client.wait_for_window(5 s)``, so at most ~5 s
of audio is ahead of the server's steps.  The audio is a -20 dBFS tone with 0.6 s of digital
silence every 20 s (the same audio in both runs):

* ``norecycle``: ``LegSettings(recycle_after_s=3600)``: one generation for the whole leg;
* ``recycle``: ``LegSettings(recycle_after_s=60, recycle_pause_ms=160)``: a new generation at the
  first pause after 60 s of audio (every 60-80 s here).

Each ``transcription.delta`` is timed when the leg's client hands it to the leg (the client's
``on_event`` callback is wrapped).  Reported per run:

* ``by_minute``: for each minute of audio, the steps whose frame lies in that minute, the wall
  time between the last step of the previous minute and the last step of this one, steps/s and
  ``x_realtime`` (60 s / that wall time; 12.5 steps/s is real time).  Recycling costs (the final
  commit's padding steps, the new generation's 39-token prefill) fall inside the minute where
  they happen; padding steps are counted too (they are server steps);
* per minute also ``server_cpu_ms_per_step``: CPU time (user + system, from ``/proc``) of the
  server's process group (API server, EngineCore, CPU worker) per step, from the first step of
  the minute to the first of the next, by process too; it depends less on other load than the
  wall-clock rate (though the CPU worker spin-waits between steps, so its share tracks wall
  time).  ``client_cpu_ms_per_step`` is this process's CPU per step, ``loadavg_1m`` the machine's
  1-minute load average at the start of the minute;
* ``by_generation_length``: steps/s against the step index within the generation (how a single
  session slows as its prompt grows);
* ``wall_s``, ``steps``, ``generations``, ``gaps_ms`` and whether the run was cut short by
  ``--max-wall-s``.

The machine these were written on is shared (2 cores, other jobs running), and the server and
the client share its cores: compare the two runs of one invocation, not across invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "tests" / "integration"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from vllm_server import VllmServer  # noqa: E402

from bridge.asr.client import AsrEndpoint  # noqa: E402
from bridge.core.asr_protocol import AsrEvent, GenerationEnded, StepText  # noqa: E402
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
MINUTE = 60 * RATE

RUNS: dict[str, LegSettings] = {
    "norecycle": LegSettings(recycle_after_s=3600),
    "recycle": LegSettings(recycle_after_s=60, recycle_pause_ms=160),
}


def group_cpu_s(pgid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) of every live process in the server's process group."""
    out: dict[str, float] = {}
    if pgid is None:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) != pgid:  # field 5, pgrp
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        out[name] = out.get(name, 0.0) + cpu
    return out


def make_audio(seconds: float, pause_every_s: float, pause_s: float) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pcm = (3277.0 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    period, quiet = int(pause_every_s * RATE), int(pause_s * RATE)
    for start in range(period - quiet, n, period):
        pcm[start : start + quiet] = 0
    return pcm


async def run_leg(
    name: str,
    settings: LegSettings,
    pcm: np.ndarray,
    endpoint: AsrEndpoint,
    db: Path,
    *,
    window_s: float,
    max_wall_s: float,
    server_pgid: int | None,
) -> dict[str, Any]:
    steps: list[tuple[int, int, int, int]] = []  # (arrival ns, generation, step, frame start)
    # At the first step of each minute of audio: (minute, ns, server CPU by process, own CPU, load)
    samples: list[tuple[int, int, dict[str, float], float, float]] = []
    generations: list[dict[str, Any]] = []
    async with await TranscriptStore.open(db) as store:
        call_id = CallId(uuid.uuid4().hex)
        now_ms = int(time.time() * 1000)
        await store.add_call(CallInfo(call_id, LegSource.FILE, now_ms, title=name))
        info = LegInfo(
            call_id, LegId(uuid.uuid4().hex), LegRole.SPEAKER, name, "pcm16/16000",
            LegSource.FILE, now_ms,
        )  # fmt: skip
        await store.add_leg(info)
        leg = Leg(info, LegAudio(RATE, AudioEncoding.PCM16), endpoint, store, settings=settings)
        handler = leg.client.on_event
        monotonic_ns = time.monotonic_ns

        def on_event(event: AsrEvent) -> None:
            if isinstance(event, StepText):
                now = monotonic_ns()
                minute = event.frame_start // MINUTE
                if not samples or minute > samples[-1][0]:
                    samples.append(
                        (minute, now, group_cpu_s(server_pgid), time.process_time(),
                         os.getloadavg()[0])
                    )  # fmt: skip
                steps.append((now, event.generation, event.step, event.frame_start))
            elif isinstance(event, GenerationEnded):
                generations.append(
                    {
                        "generation": event.generation,
                        "start_s": event.start / RATE,
                        "audio_s": event.samples / RATE,
                        "steps": event.steps,
                        "solicited": event.solicited,
                        "ended_ns": monotonic_ns(),
                    }
                )
            handler(event)

        leg.client.on_event = on_event
        leg.start()
        t0 = monotonic_ns()
        deadline = time.monotonic() + max_wall_s
        window = int(window_s * RATE)
        fed = 0
        truncated = False
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            leg.receive_frame(pcm[i : i + FRAME].tobytes())
            fed = i + FRAME
            if fed % RATE == 0:
                await leg.client.wait_for_window(window)
                if time.monotonic() > deadline:
                    truncated = True
                    break
        result = await leg.finish(timeout_s=180)
        t_end = monotonic_ns()
        samples.append(
            (samples[-1][0] + 1 if samples else 0, t_end, group_cpu_s(server_pgid),
             time.process_time(), os.getloadavg()[0])
        )  # fmt: skip
        await store.end_call(call_id, ended_at_ms=int(time.time() * 1000), cause="completed")
    return {
        "run": name,
        "settings": {
            "recycle_after_s": settings.recycle_after_s,
            "recycle_pause_ms": settings.recycle_pause_ms,
        },
        "audio_s_fed": fed / RATE,
        "truncated": truncated,
        "wall_s": round((t_end - t0) / 1e9, 2),
        "steps": len(steps),
        "generations": result.generations,
        "gaps_ms": result.gaps_ms,
        "failure": result.failure,
        "reconnects": leg.client.reconnects,
        "x_realtime_overall": round(fed / RATE / ((t_end - t0) / 1e9), 2),
        "first_step_s": round((steps[0][0] - t0) / 1e9, 3) if steps else None,
        "by_minute": by_minute(steps, fed, samples),
        "by_generation_length": by_generation_length(steps),
        "generation_list": [
            {k: round(v, 2) if isinstance(v, float) else v for k, v in g.items() if k != "ended_ns"}
            for g in generations
        ],
    }


def by_minute(
    steps: list[tuple[int, int, int, int]],
    fed: int,
    samples: list[tuple[int, int, dict[str, float], float, float]],
) -> list[dict[str, Any]]:
    """Steps per minute of audio (by frame position), timed from the previous minute's last step.

    CPU figures come from ``samples`` (taken at the first step of each minute and at the end):
    server CPU seconds per step, by process, between the first step of this minute and the next.
    """
    if not steps:
        return []
    arrivals = np.array([s[0] for s in steps], dtype=np.int64)
    minute = np.array([min(s[3], max(fed - 1, 0)) // MINUTE for s in steps], dtype=np.int64)
    out = []
    previous_end = int(arrivals[0])  # minute 0 is timed from its first step (no prefill)
    for m in range(int(minute.max()) + 1):
        mask = minute == m
        n = int(mask.sum())
        if not n:
            continue
        end = int(arrivals[mask].max())
        wall = (end - previous_end) / 1e9
        cpu: dict[str, Any] = {}
        this = [x for x in samples if x[0] == m]
        after = [x for x in samples if x[0] > m]
        if this and after:
            a, b = this[0], after[0]
            n_between = int(((arrivals >= a[1]) & (arrivals < b[1])).sum()) or 1
            server = {k: b[2].get(k, 0.0) - a[2].get(k, 0.0) for k in b[2]}
            cpu = {
                "server_cpu_ms_per_step": round(sum(server.values()) * 1e3 / n_between, 2),
                "server_cpu_ms_per_step_by_process": {
                    k: round(v * 1e3 / n_between, 2) for k, v in sorted(server.items())
                },
                "client_cpu_ms_per_step": round((b[3] - a[3]) * 1e3 / n_between, 3),
                "loadavg_1m": round(a[4], 2),
            }
        out.append(
            {
                "minute": m,
                "steps": n,
                "wall_s": round(wall, 2),
                "steps_per_s": round(n / wall, 1) if wall > 0 else None,
                "x_realtime": round(min(fed - m * MINUTE, MINUTE) / RATE / wall, 2)
                if wall > 0
                else None,
                **cpu,
            }
        )
        previous_end = end
    return out


BUCKETS = (0, 200, 600, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000)


def by_generation_length(steps: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    """Steps/s against the step index within its generation (inter-arrival within a bucket)."""
    rows: dict[int, list[float]] = {}
    last: dict[int, int] = {}
    for arrival, generation, step, _ in steps:
        prev = last.get(generation)
        last[generation] = arrival
        if prev is None:
            continue
        bucket = max(b for b in BUCKETS if b <= step)
        rows.setdefault(bucket, []).append((arrival - prev) / 1e9)
    out = []
    for i, b in enumerate(BUCKETS):
        gaps = rows.get(b)
        if not gaps:
            continue
        hi = BUCKETS[i + 1] if i + 1 < len(BUCKETS) else None
        total = sum(gaps)
        out.append(
            {
                "steps": f"{b}-{hi}" if hi else f"{b}+",
                "n": len(gaps),
                "steps_per_s": round(len(gaps) / total, 1) if total > 0 else None,
            }
        )
    return out


def summary(r: dict[str, Any]) -> str:
    lines = [
        f"{r['run']}: {r['audio_s_fed']:.0f} s of audio in {r['wall_s']:.1f} s "
        f"({r['x_realtime_overall']}x real time), {r['steps']} steps, "
        f"{r['generations']} generation(s), gaps {r['gaps_ms']} ms"
        + (" [CUT SHORT by --max-wall-s]" if r["truncated"] else ""),
        "  minute  steps  wall s  steps/s  x real time  server CPU ms/step  load",
    ]
    for row in r["by_minute"]:
        lines.append(
            f"  {row['minute']:>6}  {row['steps']:>5}  {row['wall_s']:>6}  "
            f"{row['steps_per_s']!s:>7}  {row['x_realtime']!s:>11}  "
            f"{row.get('server_cpu_ms_per_step', '-')!s:>18}  {row.get('loadavg_1m', '-')}"
        )
    lines.append("  steps into the generation -> steps/s: " + ", ".join(
        f"{row['steps']}: {row['steps_per_s']}" for row in r["by_generation_length"]
    ))  # fmt: skip
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, server: VllmServer, work: Path) -> dict[str, Any]:
    pcm = make_audio(args.audio_s, args.pause_every_s, args.pause_s)
    endpoint = AsrEndpoint(url=server.url, model=server.model, stall_timeout_s=60)
    runs = []
    for name in args.runs.split(","):
        settings = RUNS[name]
        if name == "recycle":
            settings = LegSettings(
                recycle_after_s=args.recycle_after_s, recycle_pause_ms=args.recycle_pause_ms
            )
        r = await run_leg(
            name,
            settings,
            pcm,
            endpoint,
            work / f"{name}.db",
            window_s=args.window_s,
            max_wall_s=args.max_wall_s,
            server_pgid=server.pid,
        )
        print(summary(r), flush=True)
        runs.append(r)
    return {
        "bench": "vllm_steps",
        "audio_s": args.audio_s,
        "max_model_len": args.max_model_len,
        "window_s": args.window_s,
        "pause_every_s": args.pause_every_s,
        "pause_s": args.pause_s,
        "server_startup_s": round(server.startup_seconds or 0.0, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-s", type=float, default=600.0, help="audio per run")
    parser.add_argument("--runs", default="norecycle,recycle", help="comma-separated, in order")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--window-s", type=float, default=5.0, help="audio allowed ahead")
    parser.add_argument("--recycle-after-s", type=float, default=60.0)
    parser.add_argument("--recycle-pause-ms", type=int, default=160)
    parser.add_argument("--pause-every-s", type=float, default=20.0)
    parser.add_argument("--pause-s", type=float, default=0.6)
    parser.add_argument(
        "--max-wall-s", type=float, default=600.0, help="stop feeding a run after this long"
    )
    parser.add_argument("--json", help="also write the JSON result to this file")
    args = parser.parse_args()
    for name in args.runs.split(","):
        if name not in RUNS:
            parser.error(f"unknown run {name!r} (choose from {', '.join(RUNS)})")
    if not 0 < args.audio_s <= 3600:
        parser.error("--audio-s must be in (0, 3600]")
    needed = int(args.audio_s * 12.5) + 39 + 17
    if "norecycle" in args.runs and needed > args.max_model_len:
        parser.error(f"--audio-s {args.audio_s:g} needs --max-model-len >= {needed}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-vllm-steps-"))
    server = VllmServer(max_model_len=args.max_model_len, work_dir=work / "server")
    try:
        server.start()
        print(f"vLLM server up in {server.startup_seconds:.1f} s at {server.url}", flush=True)
        result = asyncio.run(main_async(args, server, work))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    line = json.dumps(result)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)


if __name__ == "__main__":
    main()
