"""Hostile HTTP clients against a served bridge (issue 12, items 4, 6, 7): the figures.

The bridge app runs in a child process (``--repo`` picks the checkout, so an older tree can be
measured the same way), served as ``bridge serve`` serves it, with its soft open-file limit set
to 1024 first (systemd's default; the bridge raises it where the hard limit allows).  Three
scenarios, each optional:

* ``slowloris``: ``--connections`` connections each send a partial request header and then
  nothing (a few trickle one byte a second); ``/health`` is timed while they are held; then how
  long until the server cut each (up to ``--hold-s``).
* ``uploads``: ``--uploads`` concurrent raw uploads of ``--upload-mb`` MB each (a WAV header and
  silence, streamed by the client); the child's peak RSS before and after, and the wall time.
* ``junk``: one upload of a WAV with ``--junk-chunks`` empty ``JUNK`` chunks before its data;
  ``/health`` is probed every 10 ms meanwhile: the worst answer time is the event-loop stall.

    .venv/bin/python benchmarks/bench_hostile_http.py [--repo .] [--scenarios slowloris,junk]

Prints a summary and, as its last line, one JSON object (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

TOKENS = [f"bench-supervisor-token-{n}" for n in range(8)]

_CHILD = """
import asyncio, resource, socket, sys
sys.path.insert(0, sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
import uvicorn
from bridge.http.app import create_app
from bridge.auth import Principal, Role
try:
    from bridge.asr.client import AsrEndpoint
except ImportError:  # a tree before issue 14
    from bridge.io.asr_client import AsrEndpoint
from bridge.live import LiveHub
from storage import TranscriptStore

async def main() -> None:
    store = await TranscriptStore.open(sys.argv[2])
    tokens = {t: Principal(Role.SUPERVISOR) for t in sys.argv[3].split(",")}
    endpoint = AsrEndpoint(url="ws://127.0.0.1:9/v1/realtime", model="none", give_up_after_s=1.0)
    app = create_app(store=store, hub=LiveHub(), endpoint=endpoint, tokens=tokens)
    try:
        from bridge.http.server import raise_open_file_limit, server_config
    except ImportError:  # a tree before issue 12: run_http's settings then
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off",
            log_level="warning", ws_ping_interval=20, ws_ping_timeout=20,
            timeout_graceful_shutdown=5)
    else:
        raise_open_file_limit()
        config = server_config(app, "127.0.0.1", 0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])

asyncio.run(main())
"""


def wav_header(data_bytes: int, channels: int = 1, extra_chunks: int = 0) -> bytes:
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, 16000, 16000 * block, block, 16)
    size = 4 + 8 + len(fmt) + 8 * extra_chunks + 8 + data_bytes
    return b"RIFF" + struct.pack("<I", size) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt


async def body(
    header: bytes, tail: bytes, zeros: int, block: int = 1 << 20
) -> AsyncIterator[bytes]:
    yield header
    chunk = bytes(block)
    left = zeros
    while left > 0:
        n = min(block, left)
        yield chunk if n == block else chunk[:n]
        left -= n
    yield tail


class Child:
    def __init__(self, repo: Path, workdir: Path) -> None:
        self.repo = repo
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> Child:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            str(self.repo),
            str(self.workdir / "data" / "t.db"),
            ",".join(TOKENS),
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        self.port = int(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.base + "/health")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, key: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


async def health_times(base: str, n: int, timeout_s: float = 5.0) -> list[float | None]:
    """Seconds per /health on a fresh connection each (None: failed or timed out)."""
    times: list[float | None] = []
    for _ in range(n):
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                r = await client.get(base + "/health")
            times.append(time.monotonic() - started if r.status_code == 200 else None)
        except httpx.HTTPError:
            times.append(None)
    return times


async def slowloris(child: Child, connections: int, hold_s: float) -> dict[str, Any]:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    started = time.monotonic()
    for _ in range(connections):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", child.port)
            writer.write(head)
            conns.append((reader, writer))
        except OSError:
            refused += 1
    opened_s = time.monotonic() - started
    closed_at: list[float | None] = [None] * len(conns)

    async def watch(i: int, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            while await asyncio.wait_for(reader.read(65536), hold_s):
                pass
            closed_at[i] = time.monotonic() - started
            return
        if reader.at_eof():
            closed_at[i] = time.monotonic() - started

    async def trickle() -> None:
        while True:
            await asyncio.sleep(1.0)
            for _, writer in conns[:10]:
                if not writer.is_closing():
                    with contextlib.suppress(ConnectionError):
                        writer.write(b"a")

    watchers = [asyncio.create_task(watch(i, r)) for i, (r, _) in enumerate(conns)]
    trickler = asyncio.create_task(trickle())
    await asyncio.sleep(1.0)
    fds_held = child.open_fds()
    still_open_1s = sum(1 for c in closed_at if c is None)
    health = await health_times(child.base, 20)
    await asyncio.gather(*watchers)
    trickler.cancel()
    for _, writer in conns:
        writer.close()
    ok = [t for t in health if t is not None]
    cut = [c for c in closed_at if c is not None]
    return {
        "connections": connections,
        "refused_at_connect": refused,
        "opened_in_s": round(opened_s, 2),
        "open_after_1s": still_open_1s,
        "child_fds_after_1s": fds_held,
        "health_ok": len(ok),
        "health_failed": len(health) - len(ok),
        "health_ms_p50": round(sorted(ok)[len(ok) // 2] * 1000, 1) if ok else None,
        "health_ms_max": round(max(ok) * 1000, 1) if ok else None,
        "cut": len(cut),
        "cut_first_s": round(min(cut), 2) if cut else None,
        "cut_last_s": round(max(cut), 2) if cut else None,
        "still_open_at_hold_s": len(conns) - len(cut),
        "hold_s": hold_s,
    }


async def uploads(child: Child, count: int, size_mb: int) -> dict[str, Any]:
    size = size_mb * 1_000_000
    rss_before = child.status("VmRSS")
    hwm_before = child.status("VmHWM")
    started = time.monotonic()

    async def one(n: int) -> tuple[int, float]:
        async with httpx.AsyncClient(timeout=900) as client:
            t0 = time.monotonic()
            r = await client.post(
                child.base + "/api/v1/calls?pace=realtime",
                content=body(wav_header(size) + b"data" + struct.pack("<I", size), b"", size),
                headers={
                    "Content-Type": "audio/wav",
                    "Authorization": f"Bearer {TOKENS[n]}",
                    "Content-Length": str(44 + size),
                },
            )
            return r.status_code, time.monotonic() - t0

    results = await asyncio.gather(*(one(n) for n in range(count)))
    elapsed = time.monotonic() - started
    return {
        "uploads": count,
        "mb_each": size_mb,
        "statuses": [s for s, _ in results],
        "seconds_each": [round(t, 1) for _, t in results],
        "seconds_all": round(elapsed, 1),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "peak_rss_added_mb": round((child.status("VmHWM") - max(hwm_before, rss_before)) / 1e6, 1),
        "rss_after_mb": round(child.status("VmRSS") / 1e6, 1),
    }


async def junk(child: Child, chunks: int) -> dict[str, Any]:
    header = wav_header(320, extra_chunks=chunks)
    tail = b"data" + struct.pack("<I", 320) + bytes(320)

    async def junk_body() -> AsyncIterator[bytes]:
        yield header
        block = (b"JUNK" + bytes(4)) * 131072  # 1 MiB of empty chunks
        left = chunks
        while left > 0:
            n = min(131072, left)
            yield block if n == 131072 else block[: 8 * n]
            left -= n
        yield tail

    probes: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while not done.is_set():
                t0 = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(child.base + "/health")
                probes.append(time.monotonic() - t0)
                await asyncio.sleep(0.01)

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=300) as client:
        r = await client.post(
            child.base + "/api/v1/calls?title=junk.wav",
            content=junk_body(),
            headers={
                "Content-Type": "audio/wav",
                "Authorization": f"Bearer {TOKENS[0]}",
                "Content-Length": str(len(header) + 8 * chunks + len(tail)),
            },
        )
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.2)
    done.set()
    await prober
    return {
        "chunks": chunks,
        "mb": round((len(header) + 8 * chunks + len(tail)) / 1e6, 1),
        "status": r.status_code,
        "detail": r.json().get("detail") if r.status_code >= 400 else None,
        "seconds": round(elapsed, 2),
        "health_probes": len(probes),
        "worst_health_ms": round(max(probes) * 1000, 1),
    }


REPO = Path(__file__).resolve().parents[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--scenarios", default="slowloris,uploads,junk")
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--hold-s", type=float, default=30.0)
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--upload-mb", type=int, default=199)
    parser.add_argument("--junk-chunks", type=int, default=24_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    report: dict[str, Any] = {"repo": str(args.repo)}
    for scenario in args.scenarios.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-hostile-") as workdir:
            async with Child(args.repo.resolve(), Path(workdir)) as child:
                if scenario == "slowloris":
                    report[scenario] = await slowloris(child, args.connections, args.hold_s)
                elif scenario == "uploads":
                    report[scenario] = await uploads(child, args.uploads, args.upload_mb)
                elif scenario == "junk":
                    report[scenario] = await junk(child, args.junk_chunks)
                else:
                    raise SystemExit(f"unknown scenario {scenario!r}")
        print(f"{scenario}: {json.dumps(report[scenario])}", file=sys.stderr)
    line = json.dumps(report)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    asyncio.run(main())
