"""A minimal local stand-in for vLLM's ``/v1/realtime`` endpoint, for load benchmarks.

It speaks just enough of the protocol (vllm-realtime.md §1-2) for the bridge's client to run
unchanged, and does no ASR:

* on connect it sends ``session.created``;
* it reads only the ``type`` of each frame, the ``model`` of ``session.update`` (used as the
  connection's label) and the base64 *length* of each append (no decode);
* a non-final ``input_audio_buffer.commit`` starts a generation; within it the sink sends one empty
  ``transcription.delta`` per step as the real server does: the first once the generation holds
  9000 samples, then one per further 1280 samples (480 ms delay), so the client's replay buffer
  is trimmed and stays bounded;
* ``commit`` with ``final: true`` sends the rest of the steps at once (the real server's right
  padding, ``floor((12760 + n) / 1280) + 1`` steps in all for ``n`` samples) and then
  ``transcription.done`` with ``usage``.

Per connection it records every append's receive time (``time.monotonic_ns()``, taken when the
handler gets the frame, so it includes this process's own scheduling delay) and the samples
appended.  ``CLOCK_MONOTONIC`` is system-wide on Linux, so the benchmark can compare these times
with its own.

With ``--markers THRESHOLD`` it also decodes every append and records the impulses in it (for
``bench_sip.py``'s latency figure): each run of samples with ``|x| >= THRESHOLD`` (gaps under
:data:`IMPULSE_GAP` samples) gives one ``[peak_sample, peak_abs, chunk_end_sample, recv_ns]``,
sample indices counted from the connection's first append.  An impulse whose ringing straddles
two appends is recorded in both; the reader keeps the larger peak.

Run::

    python benchmarks/sink.py [--port 0] [--stats stats.json] [--max-seconds 900] [--markers 0]

It prints one JSON line ``{"port": ..., "pid": ...}`` on stdout once it listens (on 127.0.0.1
only), and writes its statistics to ``--stats`` (or stdout) when it gets SIGTERM/SIGINT or after
``--max-seconds``, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import signal
import sys
import time
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FIRST_STEP_SAMPLES = 9000  # 1280 + 480 ms delay (7680) + 40 look-ahead samples
STEP_SAMPLES = 1280  # 80 ms at 16 kHz
PAD_STEPS_SAMPLES = 12760  # steps for n samples after a final: (12760 + n) // 1280 + 1
PROMPT_TOKENS = 39

APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
DELTA = '{"type":"transcription.delta","delta":""}'
INVALID_JSON = '{"type":"error","error":"Invalid JSON","code":"invalid_json"}'
IMPULSE_GAP = 16  # samples below the threshold that still belong to one impulse


def total_steps(samples: int) -> int:
    """Deltas a generation of ``samples`` client samples yields once it is finalised."""
    if samples <= 0:
        return 0
    return (PAD_STEPS_SAMPLES + samples) // STEP_SAMPLES + 1


def steps_due(samples: int) -> int:
    """Deltas the real server would have sent so far for ``samples`` (before the final)."""
    if samples < FIRST_STEP_SAMPLES:
        return 0
    return (samples - FIRST_STEP_SAMPLES) // STEP_SAMPLES + 1


def b64_decoded_len(b64: str) -> int:
    """Decoded byte length of a padded base64 string, without decoding it."""
    n = len(b64)
    if n == 0:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    return n // 4 * 3 - pad


class ConnStats:
    __slots__ = (
        "appends",
        "commits",
        "connected_ns",
        "finals",
        "generations",
        "label",
        "markers",
        "other",
        "recv_ns",
        "samples",
        "steps_sent",
    )

    def __init__(self) -> None:
        self.label = ""
        self.connected_ns = time.monotonic_ns()
        self.appends = 0
        self.samples = 0
        self.commits = 0
        self.finals = 0
        self.generations = 0
        self.steps_sent = 0
        self.other = 0
        self.recv_ns: list[int] = []
        self.markers: list[list[int]] = []  # [peak_sample, peak_abs, chunk_end, recv_ns]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "connected_ns": self.connected_ns,
            "appends": self.appends,
            "samples": self.samples,
            "commits": self.commits,
            "finals": self.finals,
            "generations": self.generations,
            "steps_sent": self.steps_sent,
            "other_frames": self.other,
            "recv_ns": self.recv_ns,
            "markers": self.markers,
        }


def find_impulses(pcm: bytes, threshold: int) -> list[tuple[int, int]]:
    """``(index, abs value)`` of the peak of each run of ``|x| >= threshold`` in PCM16 bytes."""
    import numpy as np  # only with --markers: the plain sink stays stdlib + websockets

    x = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    hits = np.flatnonzero(x >= threshold)
    if hits.size == 0:
        return []
    runs = np.split(hits, np.flatnonzero(np.diff(hits) >= IMPULSE_GAP) + 1)
    peaks = [int(run[np.argmax(x[run])]) for run in runs]
    return [(i, int(x[i])) for i in peaks]


class Sink:
    def __init__(self, markers: int = 0) -> None:
        self.connections: list[ConnStats] = []
        self.marker_threshold = markers  # 0: appends are not decoded

    async def handler(self, ws: ServerConnection) -> None:
        stats = ConnStats()
        self.connections.append(stats)
        await ws.send(
            json.dumps(
                {
                    "type": "session.created",
                    "id": f"sess-{uuid.uuid4().hex[:16]}",
                    "created": int(time.time()),
                }
            )
        )
        running = False  # a generation is running
        gen_samples = 0  # samples appended to the running generation
        gen_steps = 0  # deltas sent for it
        pending = 0  # samples appended outside a generation (queued for the next one)
        stray_final = False  # a final commit with no generation: the next one ends at once
        monotonic_ns = time.monotonic_ns
        recv_ns = stats.recv_ns
        try:
            async for message in ws:
                now = monotonic_ns()
                if not isinstance(message, str):
                    return  # the real server drops the session on a binary frame
                kind: str | None
                if message.startswith(APPEND_HEAD) and message.endswith('"}'):
                    kind = "input_audio_buffer.append"
                    n = b64_decoded_len(message[len(APPEND_HEAD) : -2]) // 2
                    event: dict[str, Any] = {}
                else:
                    try:
                        parsed = json.loads(message)
                    except ValueError:
                        await ws.send(INVALID_JSON)
                        continue
                    event = parsed if isinstance(parsed, dict) else {}
                    kind = str(event.get("type", "")) or None
                    n = 0
                    if kind == "input_audio_buffer.append":
                        n = b64_decoded_len(str(event.get("audio", ""))) // 2
                if kind == "input_audio_buffer.append":
                    recv_ns.append(now)
                    if self.marker_threshold and n:
                        b64 = event["audio"] if event else message[len(APPEND_HEAD) : -2]
                        pcm = base64.b64decode(b64)
                        end = stats.samples + n
                        for index, peak in find_impulses(pcm, self.marker_threshold):
                            stats.markers.append([stats.samples + index, peak, end, now])
                    stats.appends += 1
                    stats.samples += n
                    if not running:
                        pending += n
                        continue
                    gen_samples += n
                    due = steps_due(gen_samples)
                    while gen_steps < due:
                        await ws.send(DELTA)
                        gen_steps += 1
                        stats.steps_sent += 1
                elif kind == "input_audio_buffer.commit":
                    final = bool(event.get("final", False))
                    if final:
                        stats.finals += 1
                        if not running:
                            stray_final = True
                            continue
                        due = total_steps(gen_samples)
                        while gen_steps < due:
                            await ws.send(DELTA)
                            gen_steps += 1
                            stats.steps_sent += 1
                        await ws.send(_done(gen_steps))
                        running = False
                        gen_samples = gen_steps = 0
                        pending = 0  # the real server clears its queue after done
                    else:
                        stats.commits += 1
                        if running:
                            continue  # "Generation already in progress, ignoring commit"
                        stats.generations += 1
                        if stray_final:
                            stray_final = False
                            pending = 0
                            await ws.send(_done(0))
                            continue
                        running = True
                        gen_samples, pending, gen_steps = pending, 0, 0
                        due = steps_due(gen_samples)
                        while gen_steps < due:
                            await ws.send(DELTA)
                            gen_steps += 1
                            stats.steps_sent += 1
                elif kind == "session.update":
                    stats.label = str(event.get("model", ""))
                else:
                    stats.other += 1
        except ConnectionClosed:
            pass


def _done(steps: int) -> str:
    return json.dumps(
        {
            "type": "transcription.done",
            "text": "",
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "total_tokens": PROMPT_TOKENS + steps,
                "completion_tokens": steps,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
        }
    )


def write_stats(path: str, result: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, path)


async def main_async(args: argparse.Namespace) -> None:
    sink = Sink(markers=args.markers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        sink.handler,
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=16 * 2**20,
        ping_interval=None,  # no keepalive traffic in the measurements
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
        except TimeoutError:
            print("sink: --max-seconds reached, exiting", file=sys.stderr)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "connections": [c.as_dict() for c in sink.connections],
    }
    if args.stats:
        write_stats(args.stats, result)  # after the server closed: nothing left to block
    else:
        json.dump(result, sys.stdout)
        print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    parser.add_argument("--stats", help="write statistics here on exit (default: stdout)")
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="exit after this long at most"
    )
    parser.add_argument(
        "--markers",
        type=int,
        default=0,
        help="decode appends and record impulses with |sample| >= this (0: off)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
