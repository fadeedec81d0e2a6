"""``POST /api/v1/calls`` under hostile or heavy use (issue 12, items 3, 6, 7, 9, 11).

Real sockets, a real uvicorn server in the test's loop, a real SQLite file and the embedded
speech engine's websocket server with a scripted recognizer (no model) as the ASR endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import uvicorn

from bridge.asr.client import AsrEndpoint
from bridge.core.types import LegSource
from bridge.engine import EngineConfig, RunningEngine, start_engine_server
from bridge.engine.recognizer import ScriptedRecognizer, TimedWord
from bridge.files.reader import MAX_HEADER_CHUNKS
from bridge.http.app import close_app, create_app
from bridge.http.server import server_config
from bridge.http.uploads import UploadLimits, UploadRunner
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.uploads import jobs as jobs_module
from storage import TranscriptStore
from tests.files.encoded import encode

from .served import ALICE, BOB, NO_ASR, SUPERVISOR, TOKENS

REPO = Path(__file__).resolve().parents[2]
WORDS = [TimedWord(" hello", 16000, 20000), TimedWord(" world.", 20000, 26000)]


# -- helpers ---------------------------------------------------------------------------------------


def wav_header(data_bytes: int, channels: int = 2, rate: int = 16000, extra: bytes = b"") -> bytes:
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) - 4 + 4 + data_bytes) + body


def wav(seconds: float, channels: int = 2) -> bytes:
    data = bytes(int(16000 * seconds) * 2 * channels)
    return wav_header(len(data), channels) + data


async def zeros(total: int, block: int = 1 << 20) -> AsyncIterator[bytes]:
    chunk = bytes(block)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield chunk if n == block else chunk[:n]
        sent += n


@dataclass
class Bridge:
    base: str
    store: TranscriptStore
    uploads: UploadRunner
    upload_dir: Path

    def client(self, token: str = SUPERVISOR) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def leftovers(self) -> list[str]:
        """What is under the upload folders besides this process's lock file."""
        return sorted(
            str(p.relative_to(self.upload_dir))
            for p in self.upload_dir.rglob("*")
            if p != self.uploads.folder and p != self.uploads.folder / ".lock"
        )


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path,
    endpoint: AsrEndpoint = NO_ASR,
    limits: UploadLimits | None = None,
) -> AsyncIterator[Bridge]:
    store = await TranscriptStore.open(tmp_path / "data" / "t.db")
    app = create_app(
        store=store,
        hub=LiveHub(),
        endpoint=endpoint,
        tokens=TOKENS,
        settings=LegSettings(),
        upload_limits=limits,
    )
    server = _Quiet(server_config(app, "127.0.0.1", 0))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        runner: UploadRunner = app.state.bridge.uploads
        yield Bridge(f"http://127.0.0.1:{port}", store, runner, runner.root)
    finally:
        await close_app(app)
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await store.close()


@pytest.fixture
async def engine() -> AsyncIterator[RunningEngine]:
    running = await start_engine_server(
        EngineConfig(max_model_len=2048, max_legs=16, word_anchor="end"),
        recognizer=ScriptedRecognizer(WORDS),
    )
    try:
        yield running
    finally:
        await running.close()


def endpoint_of(engine: RunningEngine, max_legs: int | None) -> AsrEndpoint:
    return AsrEndpoint(url=engine.url, model=engine.model, max_legs=max_legs)


async def post(
    client: httpx.AsyncClient, content: Any, *, query: str = "pace=realtime", **headers: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/calls?{query}",
        content=content,
        headers={"Content-Type": "audio/wav", **headers},
    )


async def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def call_doc(client: httpx.AsyncClient, call_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/calls/{call_id}")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def upload_legs_live() -> int:
    from bridge.leg import live_legs

    return sum(1 for leg in live_legs() if leg.info.source is LegSource.FILE)


# -- item 3: capacity, queue, per-token limit, cancel ------------------------------------------


async def test_uploads_take_only_spare_capacity_queue_and_cancel(
    tmp_path: Path, engine: RunningEngine
) -> None:
    # A 4-leg ASR server: uploads may use 3 (one leg is kept for live calls), so one stereo
    # upload runs and the next ones wait in the queue.
    async with (
        serve(tmp_path, endpoint_of(engine, 4)) as bridge,
        bridge.client(ALICE) as alice,
        bridge.client(BOB) as bob,
        bridge.client() as sup,
    ):
        first = await post(alice, wav(20.0))
        assert first.status_code == 202, first.text
        assert (first.json()["status"], first.json()["queue_position"]) == ("running", 0)
        second = await post(alice, wav(20.0))
        assert (second.json()["status"], second.json()["queue_position"]) == ("queued", 1)
        # Per token: 2 uploads receiving, queued or running.
        third = await post(alice, wav(1.0))
        assert third.status_code == 429, third.text
        assert third.headers["retry-after"] and third.json()["status"] == 429
        assert len(_upload_dirs(bridge)) == 2  # the refused one left no folder
        queued = await post(bob, wav(5.0, channels=1))
        assert (queued.json()["status"], queued.json()["queue_position"]) == ("queued", 2)
        assert upload_legs_live() <= 3

        # The queued call is stored (active, no legs yet) and visible to its agent.
        doc = await call_doc(bob, queued.json()["id"])
        assert doc["call"]["active"] and doc["legs"] == []

        # DELETE cancels a queued upload: stored as ended "cancelled", its file removed.
        r = await sup.delete(f"/api/v1/calls/{queued.json()['id']}")
        assert r.status_code == 200, r.text
        assert (r.json()["end_cause"], r.json()["active"]) == ("cancelled", False)

        # DELETE cancels a running upload: finals so far kept, legs closed.
        first_id = first.json()["id"]

        async def has_final() -> bool:
            doc = await call_doc(sup, first_id)
            return any(s["final"] for s in doc["segments"])

        await wait_for(has_final, 30)
        r = await sup.delete(f"/api/v1/calls/{first_id}")
        assert r.status_code == 200, r.text
        doc = await call_doc(sup, first_id)
        assert doc["call"]["end_cause"] == "cancelled"
        assert [s["text"] for s in doc["segments"] if s["final"]] == ["hello world."] * 2
        assert all(leg["ended_at_ms"] is not None for leg in doc["legs"])
        # ... and the queued one starts in its place.
        second_id = second.json()["id"]

        async def started() -> bool:
            return len((await call_doc(sup, second_id))["legs"]) == 2

        await wait_for(started, 5)
        # A second DELETE of the ended call deletes it as before.
        assert (await sup.delete(f"/api/v1/calls/{first_id}")).status_code == 204
        r = await sup.delete(f"/api/v1/calls/{second_id}")
        assert r.status_code == 200 and r.json()["end_cause"] == "cancelled"
        await wait_for(_no_uploads(bridge), 5)
        assert bridge.leftovers() == []


def _upload_dirs(bridge: Bridge) -> list[str]:
    return sorted(p.name for p in bridge.uploads.folder.iterdir() if p.is_dir())


def _no_uploads(bridge: Bridge) -> Any:
    async def check() -> bool:
        return bridge.uploads.running == 0 and bridge.uploads.queued == 0

    return check


async def test_live_calls_come_first(
    tmp_path: Path, engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three live SIP legs on a 4-leg server: a stereo upload waits until they end."""

    @dataclass
    class FakeLeg:
        source: LegSource

        @property
        def info(self) -> Any:
            return self

    live = [FakeLeg(LegSource.SIP) for _ in range(3)]
    real_live_legs = jobs_module.live_legs
    monkeypatch.setattr(jobs_module, "live_legs", lambda: [*real_live_legs(), *live])
    async with serve(tmp_path, endpoint_of(engine, 4)) as bridge, bridge.client() as sup:
        r = await post(sup, wav(3.0), query="pace=fast")
        assert (r.json()["status"], r.json()["queue_position"]) == ("queued", 1)
        await asyncio.sleep(0.6)
        assert bridge.uploads.queued == 1 and bridge.uploads.running == 0
        live.clear()  # the live calls end

        async def ended() -> bool:
            return not (await call_doc(sup, r.json()["id"]))["call"]["active"]

        await wait_for(ended, 20)
        doc = await call_doc(sup, r.json()["id"])
        assert doc["call"]["end_cause"] == "completed" and len(doc["legs"]) == 2


async def test_uploads_queued_together_all_start_in_turn(
    tmp_path: Path, engine: RunningEngine
) -> None:
    """Two uploads waiting at once: the first starts when capacity frees, then the second."""
    limits = UploadLimits(per_token=10)
    async with serve(tmp_path, endpoint_of(engine, 4), limits) as bridge, bridge.client() as sup:
        posted = [await post(sup, wav(2.0), query="pace=fast") for _ in range(3)]
        assert [(r.json()["status"], r.json()["queue_position"]) for r in posted] == [
            ("running", 0),
            ("queued", 1),
            ("queued", 2),
        ]

        async def all_ended() -> bool:
            docs = [await call_doc(sup, r.json()["id"]) for r in posted]
            return not any(doc["call"]["active"] for doc in docs)

        await wait_for(all_ended, 30)
        for r in posted:
            doc = await call_doc(sup, r.json()["id"])
            assert doc["call"]["end_cause"] == "completed" and len(doc["legs"]) == 2
        await wait_for(_no_uploads(bridge), 5)
        assert bridge.leftovers() == []


async def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    limits = UploadLimits(max_running=1, max_queued=1, per_token=10)
    async with serve(tmp_path, limits=limits) as bridge, bridge.client() as sup:
        # An unreachable ASR server (NO_ASR, no max_legs): max_running bounds the uploads.
        running = await post(sup, wav(5.0))
        assert running.json()["status"] == "running"
        queued = await post(sup, wav(5.0))
        assert queued.json()["queue_position"] == 1
        full = await post(sup, wav(5.0))
        assert full.status_code == 503, full.text
        assert full.headers["retry-after"] == "30"
        assert full.json()["type"].endswith("/busy")
        for r in (running, queued):
            assert (await sup.delete(f"/api/v1/calls/{r.json()['id']}")).status_code == 200
        assert bridge.leftovers() == []


# -- item 6: bytes streamed to disk, limits as they arrive, bounded receiving --------------------


async def test_the_limit_applies_to_multipart_and_chunked_bodies_as_bytes_arrive(
    tmp_path: Path,
) -> None:
    limit = 1 << 20
    async with serve(tmp_path, limits=UploadLimits(max_bytes=limit)) as bridge:
        async with bridge.client() as sup:
            # multipart: the file part past the limit (no Content-Length: chunked)
            boundary = "b0undary"
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file";'
                f' filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            ).encode() + wav_header(3 * limit)

            async def multipart() -> AsyncIterator[bytes]:
                yield head
                async for block in zeros(3 * limit, 64 * 1024):
                    yield block
                yield f"\r\n--{boundary}--\r\n".encode()

            r = await sup.post(
                "/api/v1/calls",
                content=multipart(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert r.status_code == 413, r.text
            assert str(limit) in r.json()["detail"]
            # raw, chunked
            r = await post(sup, zeros(2 * limit, 64 * 1024))
            assert r.status_code == 413
            # a declared length past the limit is refused before the body is read
            reader, writer = await asyncio.open_connection("127.0.0.1", int(bridge.base[17:]))
            writer.write(
                b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                + f"Authorization: Bearer {SUPERVISOR}\r\n".encode()
                + f"Content-Length: {10 * limit}\r\n\r\nRIFF".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 413"), head
            writer.close()
            # a multipart upload within the limit works, named by its file name
            r = await sup.post(
                "/api/v1/calls?pace=fast",
                files={"file": ("réunion 1.wav", wav(0.5, channels=1), "audio/wav")},
            )
            assert r.status_code == 202, r.text
            doc = await call_doc(sup, r.json()["id"])
            assert doc["call"]["title"] == "réunion 1.wav"
            r = await sup.post("/api/v1/calls", files={"other": ("a.wav", b"RIFF", "audio/wav")})
            assert r.status_code == 400 and "'file'" in r.json()["detail"]
        await wait_for(_no_uploads(bridge), 10)
        assert bridge.leftovers() == []


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def test_concurrent_large_uploads_do_not_grow_memory(tmp_path: Path) -> None:
    """Four 40 MB uploads at once: streamed to disk, the peak RSS grows by far less than them."""
    if not _reset_peak_rss():
        pytest.fail("cannot reset the peak RSS here: the test needs Linux's /proc/self/clear_refs")
    size = 40 * 1024 * 1024
    async with serve(tmp_path, limits=UploadLimits(per_token=8)) as bridge:
        async with bridge.client() as sup:
            await post(sup, wav(0.1))  # warm up the code paths
            _reset_peak_rss()
            before = _peak_rss_bytes()
            started = time.monotonic()

            async def one() -> httpx.Response:
                async def body() -> AsyncIterator[bytes]:
                    yield wav_header(size, channels=1)
                    async for block in zeros(size, 256 * 1024):
                        yield block

                return await post(sup, body(), **{"Content-Length": str(44 + size)})

            responses = await asyncio.gather(*(one() for _ in range(4)))
            elapsed = time.monotonic() - started
            grown = _peak_rss_bytes() - before
        assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
        print(f"\n4 x 40 MB uploads: peak RSS +{grown / 2**20:.1f} MiB, {elapsed:.2f} s")
        assert grown < 40 * 1024 * 1024, grown


async def test_receiving_is_bounded(tmp_path: Path) -> None:
    limits = UploadLimits(max_receiving=1, per_token=5)
    async with serve(tmp_path, limits=limits) as bridge, bridge.client() as sup:
        gate = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield wav_header(32000, channels=1)
            await gate.wait()
            yield bytes(32000)

        first = asyncio.create_task(post(sup, slow(), **{"Content-Length": str(44 + 32000)}))
        await wait_for(_receiving(bridge), 5)
        r = await post(sup, wav(0.5, channels=1))
        assert r.status_code == 503 and r.headers["retry-after"] == "10", r.text
        gate.set()
        assert (await first).status_code == 202


def _receiving(bridge: Bridge) -> Any:
    async def check() -> bool:
        return bridge.uploads.receiving == 1

    return check


# -- item 7: a hostile WAV header does not stall the event loop ----------------------------------


async def test_millions_of_junk_chunks_neither_stall_the_loop_nor_pass(tmp_path: Path) -> None:
    junk = (b"JUNK" + bytes(4)) * 3_000_000  # 24 MB of empty chunks before the data
    body = wav_header(320, channels=1, extra=junk) + bytes(320)
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    async with serve(tmp_path) as bridge, bridge.client() as sup:
        tick = asyncio.create_task(ticker())
        r = await post(sup, body, query="title=junk.wav")
        done.set()
        await tick
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (
            f"junk.wav: damaged WAV header (more than {MAX_HEADER_CHUNKS} chunks before the fmt"
            " and data chunks); export it again"
        )
        assert bridge.leftovers() == []
    worst = max(stalls)
    print(f"\nJUNK-chunk WAV (3M chunks, 24 MB): worst event-loop stall {worst * 1000:.1f} ms")
    assert worst < 0.5, worst  # before: seconds (the parse of every chunk on the loop)


# -- item 9: bad titles are 400s and leave nothing behind ----------------------------------------


@pytest.mark.parametrize(
    ("title", "detail"),
    [
        ("a\x00b.wav", "title: control characters are not allowed"),
        ("x" * 300, "title: at most 255 characters, got 300"),
    ],
)
async def test_a_bad_title_is_a_400_problem_and_leaves_no_folder(
    tmp_path: Path, title: str, detail: str
) -> None:
    async with serve(tmp_path) as bridge, bridge.client() as sup:
        r = await sup.post(
            "/api/v1/calls",
            params={"title": title},
            content=wav(0.5, channels=1),
            headers={"Content-Type": "audio/wav"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == detail
        assert r.headers["content-type"] == "application/problem+json"
        # The same as a multipart file name (written raw: httpx would escape the NUL).
        body = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="'
            + title.encode()
            + b'"\r\nContent-Type: audio/wav\r\n\r\n'
            + wav(0.5, channels=1)
            + b"\r\n--XyZ--\r\n"
        )
        r = await sup.post(
            "/api/v1/calls",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == detail
        assert bridge.leftovers() == []


async def test_bad_audio_is_a_422_without_server_paths(tmp_path: Path) -> None:
    async with serve(tmp_path) as bridge, bridge.client() as sup:
        r = await post(sup, b"not a wav at all", query="title=my%20call.wav")
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "my call.wav: not an audio file FFmpeg can read (FFmpeg found no known format in"
            " it); pass a recording (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, WebM, ...)"
        )
        # A fix command names the user's file, not the stored one.
        r = await post(sup, wav(0.5, channels=3), query="title=my%20call.wav")
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert str(tmp_path) not in detail and "upload" not in detail, detail
        assert detail.endswith(
            "keep the first two with: ffmpeg -i 'my call.wav' -af 'pan=stereo|c0=c0|c1=c1'"
            " 'my call-stereo.wav'"
        ), detail


# -- issue 13 item 6: the formats people have ----------------------------------------------------


def _tone(seconds: float, freq: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * 16000)) / 16000
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def test_mp3_opus_and_flac_uploads_are_transcribed(
    tmp_path: Path, engine: RunningEngine
) -> None:
    stereo = [_tone(3.0, 300), _tone(3.0, 500)]
    mp3 = encode(tmp_path / "a.mp3", stereo, container="mp3", codec="libmp3lame", rate=44100)
    opus = encode(tmp_path / "b.ogg", stereo[:1], container="ogg", codec="libopus", rate=48000)
    flac = encode(tmp_path / "c.flac", stereo, container="flac", codec="flac", rate=16000)
    async with (
        serve(tmp_path, endpoint_of(engine, 16)) as bridge,
        bridge.client() as sup,
        bridge.client(ALICE) as alice,
        bridge.client(BOB) as bob,
    ):
        ids = []
        r = await post(
            sup,
            mp3.read_bytes(),
            query="pace=fast&title=call.mp3",
            **{"Content-Type": "audio/mpeg"},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        r = await alice.post(
            "/api/v1/calls?pace=fast",
            files={"file": ("meeting.opus", opus.read_bytes(), "audio/ogg")},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        r = await post(  # media types are case-insensitive; this one says nothing of FLAC
            bob,
            flac.read_bytes(),
            query="pace=fast",
            **{"Content-Type": "Application/Octet-Stream"},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])

        async def all_ended() -> bool:
            docs = [await call_doc(sup, i) for i in ids]
            return not any(doc["call"]["active"] for doc in docs)

        await wait_for(all_ended, 60)
        for call_id, title, codec, legs in zip(
            ids,
            ["call.mp3", "meeting.opus", "upload.wav"],
            ["pcm16/44100", "pcm16/48000", "pcm16/16000"],
            [2, 1, 2],
            strict=True,
        ):
            doc = await call_doc(sup, call_id)
            assert (doc["call"]["title"], doc["call"]["end_cause"]) == (title, "completed")
            assert [leg["codec"] for leg in doc["legs"]] == [codec] * legs
            assert all(abs(leg["duration_ms"] - 3000) <= 30 for leg in doc["legs"]), doc["legs"]
            finals = [s["text"] for s in doc["segments"] if s["final"]]
            assert finals == ["hello world."] * legs
        await wait_for(_no_uploads(bridge), 5)
        assert bridge.leftovers() == []


async def test_upload_types_and_playlists(tmp_path: Path) -> None:
    async with serve(tmp_path) as bridge, bridge.client() as sup:
        r = await post(sup, b"hello", **{"Content-Type": "text/plain"})
        assert r.status_code == 415
        assert r.json()["detail"] == (
            "Content-Type text/plain: send the recording as audio/* (audio/wav, audio/mpeg,"
            " audio/ogg, audio/mp4, audio/flac, ...), or multipart/form-data with a 'file' field"
        )
        # An HLS playlist would make FFmpeg read the files it lists: refused, nothing read.
        secret = tmp_path / "secret.wav"
        secret.write_bytes(wav(1.0))
        playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret.as_uri()}\n"
        r = await post(
            sup,
            playlist.encode(),
            query="title=list.m3u8",
            **{"Content-Type": "application/vnd.apple.mpegurl"},
        )
        assert r.status_code == 415  # not an audio type...
        r = await post(
            sup, playlist.encode(), query="title=list.m3u8", **{"Content-Type": "audio/mpegurl"}
        )
        assert r.status_code == 422, r.text  # ...nor an audio format, whatever its type says
        assert r.json()["detail"] == (
            "list.m3u8: not an audio format this bridge reads (FFmpeg found a playlist, image or"
            " other non-audio format); pass a recording (WAV, MP3, OGG/Opus, M4A/AAC, FLAC,"
            " WebM, ...)"
        )
        assert bridge.leftovers() == []


# -- item 11: kill -9 during an upload ------------------------------------------------------------

_CHILD = """
import asyncio, socket, sys
from pathlib import Path
import uvicorn
from bridge.http.app import create_app
from bridge.http.server import server_config
from bridge.asr.client import AsrEndpoint
from bridge.live import LiveHub
from storage import TranscriptStore
from tests.http.served import TOKENS

async def main() -> None:
    store = await TranscriptStore.open(sys.argv[1])
    endpoint = AsrEndpoint(url=sys.argv[2], model=sys.argv[3], max_legs=4)
    app = create_app(store=store, hub=LiveHub(), endpoint=endpoint, tokens=TOKENS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    await uvicorn.Server(server_config(app, "127.0.0.1", 0)).serve(sockets=[sock])

asyncio.run(main())
"""


async def test_kill_9_during_an_upload_restart_ends_the_call_at_its_last_activity(
    tmp_path: Path, engine: RunningEngine
) -> None:
    db = tmp_path / "data" / "t.db"
    db.parent.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(db),
        engine.url,
        engine.model,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        killed_at, call_id = await _upload_and_kill(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await _restart_and_check(db, killed_at, call_id)


async def _upload_and_kill(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """Upload 30 s at real-time pace to the child, kill -9 it once a final is stored."""
    assert proc.stdout is not None
    port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {SUPERVISOR}"}, timeout=30
    ) as client:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        r = await post(client, wav(30.0), query="pace=realtime&title=long.wav")
        assert r.status_code == 202, r.text
        call_id = r.json()["id"]

        async def has_final() -> bool:
            return any(s["final"] for s in (await call_doc(client, call_id))["segments"])

        await wait_for(has_final, 30)
        killed_at = int(time.time() * 1000)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    return killed_at, call_id


async def _restart_and_check(db: Path, killed_at: int, call_id: str) -> None:
    """What ``bridge serve`` does at start: end the dead calls, remove the dead uploads."""
    uploads_dir = db.parent / "uploads"
    dead_folders = [p for p in uploads_dir.iterdir() if p.is_dir()]
    assert len(dead_folders) == 1 and any(dead_folders[0].rglob("upload.wav"))

    await asyncio.sleep(1.0)  # the restart comes later: its time must not be the end
    async with await TranscriptStore.open(db) as store:
        restarted_at = int(time.time() * 1000)
        dead = await store.end_dead_calls(cause="bridge-restarted", now_ms=restarted_at)
        assert [d.call_id for d in dead] == [call_id]
        app = create_app(store=store, hub=LiveHub(), endpoint=NO_ASR, tokens=TOKENS)
        try:
            # The dead process's upload files are gone (the new one makes its folder on its
            # first upload).
            assert list(uploads_dir.iterdir()) == []
        finally:
            await close_app(app)
        transcript = await store.get_call(call_id)
    assert transcript is not None
    call = transcript.call
    assert call.end_cause == "bridge-restarted"
    assert call.ended_at_ms is not None and call.ended_at_ms <= killed_at < restarted_at - 900
    assert all(not leg.active and leg.duration_ms == 30_000 for leg in transcript.legs)
    rest = [g for g in transcript.gaps if g.reason.startswith("not transcribed")]
    assert len(rest) == 2 and all(g.start_ms + g.duration_ms == 30_000 for g in rest)
    assert all(g.start_ms > 1000 for g in rest)
    assert [s.text for s in transcript.segments if s.final][:1] == ["hello world."]
