"""``POST /api/v1/calls``: an uploaded recording transcribed as a live call in this process.

The body is streamed to a file as it arrives (raw ``audio/*`` or ``multipart/form-data``), the
limit of :attr:`UploadLimits.max_bytes` enforced on the bytes received, never on a whole body in
memory.  Any format ``bridge transcribe`` reads is taken (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, ...:
:mod:`bridge.io.audio_files`), its header probed in a thread, its samples read in one too.
The file goes through :func:`bridge.transcribe.transcribe_file` (the same leg pipeline as
a live call) at real-time pace or fast; the hub sees every event, so the live API and the
dashboards show it like any call.

Capacity: live calls come first.  An upload takes ASR legs (one per channel) only from what live
calls leave spare: it starts while the legs of running uploads stay within the ASR endpoint's
``max_legs`` less a reserve kept for live calls (:attr:`UploadLimits.reserve_legs`, a quarter by
default), and within what live SIP/WebRTC legs leave free.  Otherwise it waits in a bounded FIFO
queue (its call is stored, active with no legs; the 202 answer says its position) and starts as
capacity frees.  Bounded too: bodies received at once, uploads per API token (receiving, queued or
running), uploads running.  ``DELETE`` on the call cancels a queued or running upload: it ends
``cancelled``, with the finals transcribed so far.

Files: each process keeps its uploads under ``<data dir>/uploads/<pid>-<random>/``, locked with
``flock`` while it lives.  A process killed mid-upload leaves its folder unlocked; the next one
removes it at start (and ``bridge serve`` ends the dead calls: ``TranscriptStore.end_dead_calls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import secrets
import shlex
import shutil
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, cast

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from bridge.asr.client import AsrEndpoint
from bridge.core.types import CallId, CallInfo, LegEvent, LegRole, LegSource
from bridge.errors import BridgeError, MediaError
from bridge.io.audio_files import AudioFile, open_audio
from bridge.leg import LegSettings, live_legs
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from bridge.transcribe import transcribe_file
from storage import MEDIA_DURATION_EVENT, TranscriptStore

from .problems import HttpProblem

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 255
MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries, part headers and small fields around the file
WRITE_BLOCK_BYTES = 1 << 20  # received bytes are written to disk in blocks this big, off the loop
PUMP_INTERVAL_S = 0.25  # how often a waiting queue looks at the ASR capacity again
ORPHAN_GRACE_S = 60.0  # a folder without a lock file is another process starting up, until then
_LOCK_NAME = ".lock"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_FILE_STEM = "upload"


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadLimits:
    """What uploads may use.  Per token means per API token (its bearer string)."""

    max_bytes: int = 200 * 1024 * 1024  # the recording (the file part of a multipart body)
    max_receiving: int = 4  # request bodies being received at once
    max_running: int = 8  # uploads transcribing at once (and only within ASR capacity)
    max_queued: int = 16  # uploads accepted and waiting for capacity
    per_token: int = 2  # uploads of one token receiving, queued or running
    reserve_legs: int | None = None  # ASR legs kept for live calls; None: max_legs // 4
    cancel_wait_s: float = 15.0  # DELETE waits this long for a cancelled upload's legs to finish


class UploadState:
    QUEUED = "queued"
    RUNNING = "running"


@dataclass(eq=False)
class Upload:
    """One accepted upload, from the queue to the end of its call."""

    call_id: CallId
    token: str
    folder: Path
    audio: AudioFile
    title: str
    fast: bool
    roles: tuple[LegRole, ...]
    store: PublishingStore
    state: str = UploadState.QUEUED
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cause: str = "interrupted"  # the end cause if ``stop`` is set
    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def legs(self) -> int:
        return self.audio.channels


@dataclass(frozen=True, slots=True)
class Accepted:
    call_id: CallId
    state: str
    queue_position: int  # 0: started at once


class UploadRunner:
    """Receives, queues and runs uploads; owns their files and tasks."""

    def __init__(
        self,
        *,
        store: TranscriptStore,
        hub: LiveHub,
        endpoint: AsrEndpoint,
        settings: LegSettings,
        directory: Path,
        limits: UploadLimits | None = None,
        on_call_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.endpoint = endpoint
        self.settings = settings
        self.limits = limits or UploadLimits()
        self.on_call_ended = on_call_ended
        self.failures = 0
        self._queue: deque[Upload] = deque()
        self._running: list[Upload] = []
        self._by_call: dict[str, Upload] = {}
        self._receiving: dict[str, int] = {}  # token -> bodies being received
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._closing = False
        self.root = directory
        self._folder: Path | None = None
        self._lock_fd: int | None = None
        removed = sweep_dead_uploads(directory)
        if removed:
            logger.warning("removed the files of %d upload(s) left by a process that died", removed)

    @property
    def folder(self) -> Path:
        """This process's folder under the uploads directory (made and locked on first use)."""
        if self._folder is None:
            self._folder, self._lock_fd = _claim_folder(self.root)
        return self._folder

    # -- counts --------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def receiving(self) -> int:
        return sum(self._receiving.values())

    def owns(self, call_id: str) -> bool:
        """Whether ``call_id`` is an upload of this process still queued or running."""
        return call_id in self._by_call

    def _of_token(self, token: str) -> int:
        uploads = sum(1 for u in self._by_call.values() if u.token == token)
        return self._receiving.get(token, 0) + uploads

    # -- receiving -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def receiving_slot(self, token: str) -> AsyncIterator[Path]:
        """A slot to receive one body into (a fresh folder, removed unless the upload is
        accepted); HttpProblem 429/503 when the token or the bridge has too many already."""
        limits = self.limits
        if self._closing:
            raise HttpProblem(503, "the bridge is stopping", kind="busy")
        if self._of_token(token) >= limits.per_token:
            raise HttpProblem(
                429,
                f"this token has {limits.per_token} uploads receiving, queued or running (the"
                " limit per token); wait for one to end, or cancel one with DELETE",
                kind="too-many-uploads",
                headers={"Retry-After": "30"},
            )
        if self.receiving >= limits.max_receiving:
            raise HttpProblem(
                503,
                f"{self.receiving} uploads are being received already; retry later",
                kind="busy",
                headers={"Retry-After": "10"},
            )
        if len(self._queue) >= limits.max_queued:
            raise self._queue_full()
        self._receiving[token] = self._receiving.get(token, 0) + 1
        folder = self.folder / uuid.uuid4().hex
        try:
            folder.mkdir(mode=0o700)
            yield folder
        finally:
            self._receiving[token] -= 1
            if not self._receiving[token]:
                del self._receiving[token]
            if not any(u.folder == folder for u in self._by_call.values()):
                await asyncio.to_thread(shutil.rmtree, folder, True)

    def _queue_full(self) -> HttpProblem:
        return HttpProblem(
            503,
            f"{len(self._queue)} uploads wait for transcription capacity already (the queue's"
            " limit); retry later",
            kind="busy",
            headers={"Retry-After": "30"},
        )

    # -- accepting -------------------------------------------------------------------------------

    async def submit(
        self,
        path: Path,
        *,
        token: str,
        title: str,
        fast: bool,
        roles: Sequence[LegRole],
        agent: str | None,
    ) -> Accepted:
        """Check the file (MediaError if unusable), store its call, start or queue it."""
        audio = await asyncio.to_thread(open_audio, path)  # bounded, but file I/O: off the loop
        max_legs = self.endpoint.max_legs
        if max_legs is not None and audio.channels > self._budget(max_legs):
            raise HttpProblem(
                422,
                f"a {audio.channels}-channel recording needs {audio.channels} ASR legs; this"
                f" bridge gives uploads at most {self._budget(max_legs)}: send it as mono",
                kind="over-capacity",
            )
        if not self._can_start(audio.channels) and len(self._queue) >= self.limits.max_queued:
            raise self._queue_full()
        if self._closing:
            raise HttpProblem(503, "the bridge is stopping", kind="busy")
        tee = PublishingStore(self.store, self.hub, agent=agent, on_call_ended=self.on_call_ended)
        call_id = CallId(uuid.uuid4().hex)
        now_ms = int(time.time() * 1000)
        upload = Upload(call_id, token, path.parent, audio, title, fast, tuple(roles), tee)
        self._by_call[call_id] = upload  # before the first await: counted from here on
        try:
            await tee.add_call(CallInfo(call_id, LegSource.FILE, now_ms, title=title))
            # How long the audio is: if this process dies, the restart marks the rest as a gap.
            tee.put_event(
                LegEvent(
                    call_id,
                    None,
                    now_ms,
                    MEDIA_DURATION_EVENT,
                    f"duration_ms={audio.duration_ms} channels={audio.channels}",
                )
            )
        except BaseException:
            del self._by_call[call_id]
            raise
        self._queue.append(upload)
        self._pump()
        if upload.state == UploadState.RUNNING:
            return Accepted(call_id, upload.state, 0)
        self._ensure_pump_task()
        return Accepted(call_id, upload.state, self._queue.index(upload) + 1)

    # -- capacity and the queue ------------------------------------------------------------------

    def _budget(self, max_legs: int) -> int:
        """ASR legs all uploads together may use: the capacity less the live calls' reserve
        (at least enough for one stereo upload, where the server takes two legs)."""
        reserve = self.limits.reserve_legs
        if reserve is None:
            reserve = max_legs // 4
        return max(max_legs - reserve, min(2, max_legs))

    def spare_legs(self) -> int | None:
        """Legs a new upload may take now; None: the ASR endpoint states no limit."""
        max_legs = self.endpoint.max_legs
        if max_legs is None:
            return None
        ours = sum(u.legs for u in self._running)
        live = sum(1 for leg in live_legs() if leg.info.source is not LegSource.FILE)
        return min(self._budget(max_legs) - ours, max_legs - live - ours)

    def _can_start(self, legs: int, *, queued_before: int = 0) -> bool:
        if self._closing or len(self._queue) > queued_before:
            return False  # first come, first served
        if len(self._running) >= self.limits.max_running:
            return False
        spare = self.spare_legs()
        return spare is None or spare >= legs

    def _pump(self) -> None:
        """Start queued uploads, first come first served, while capacity allows."""
        while self._queue and self._can_start(self._queue[0].legs, queued_before=1):
            self._start(self._queue.popleft())

    def _ensure_pump_task(self) -> None:
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump_loop(), name="upload-queue")

    async def _pump_loop(self) -> None:
        """While uploads wait: look again when one ends, and every PUMP_INTERVAL_S (live legs
        ending free capacity too)."""
        while self._queue and not self._closing:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUMP_INTERVAL_S)
            self._pump()

    def queue_position(self, call_id: str) -> int | None:
        """1 for the next upload to start; None if not queued."""
        for n, upload in enumerate(self._queue, 1):
            if upload.call_id == call_id:
                return n
        return None

    # -- running -------------------------------------------------------------------------------

    def _start(self, upload: Upload) -> None:
        upload.state = UploadState.RUNNING
        self._running.append(upload)
        upload.task = asyncio.create_task(self._run(upload), name=f"upload-{upload.call_id[:8]}")

    async def _run(self, upload: Upload) -> None:
        try:
            await transcribe_file(
                upload.audio,
                endpoint=self.endpoint,
                store=cast(TranscriptStore, upload.store),
                settings=self.settings,
                fast=upload.fast,
                roles=upload.roles,
                listener=self.hub.listener,
                stop=upload.stop,
                stop_cause=lambda: upload.cause,
                call_id=upload.call_id,
                title=upload.title,
            )
        except BridgeError as exc:
            self.failures += 1
            logger.warning("uploaded call %s (%s) failed: %s", upload.call_id, upload.title, exc)
        finally:
            try:
                await asyncio.to_thread(shutil.rmtree, upload.folder, True)
            finally:
                self._running.remove(upload)
                self._by_call.pop(upload.call_id, None)
                upload.ended.set()
                self._wake.set()
                self._pump()

    # -- cancelling ------------------------------------------------------------------------------

    async def cancel(self, call_id: str, *, cause: str = "cancelled") -> bool:
        """Stop a queued or running upload: its call ends ``cause`` with the finals so far.
        True once its call has ended; False if it still finishes after ``cancel_wait_s``."""
        upload = self._by_call.get(call_id)
        if upload is None:
            return True
        if upload.state == UploadState.QUEUED:
            if upload in self._queue:  # (not yet there while its call is being stored)
                self._queue.remove(upload)
            self._by_call.pop(call_id, None)
            try:
                await upload.store.end_call(
                    call_id, ended_at_ms=int(time.time() * 1000), cause=cause
                )
            finally:
                await asyncio.to_thread(shutil.rmtree, upload.folder, True)
                upload.ended.set()
                self._wake.set()
            return True
        if not upload.stop.is_set():
            upload.cause = cause
            upload.stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(upload.ended.wait(), self.limits.cancel_wait_s)
        return upload.ended.is_set()

    async def close(self, *, finish_timeout_s: float = 30.0) -> None:
        """Stop feeding uploads; let their legs finish (calls end ``interrupted``), then cancel;
        queued uploads end ``interrupted`` too.  Removes this process's upload folder."""
        self._closing = True
        self._wake.set()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        for upload in list(self._queue):
            with contextlib.suppress(BridgeError):
                await self.cancel(upload.call_id, cause="interrupted")
        tasks = [u.task for u in self._running if u.task is not None]
        for upload in self._running:
            upload.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=finish_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._folder is not None:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


# -- the request body ------------------------------------------------------------------------------


def parse_title(raw: str | None) -> str:
    """The call's title from ``?title=`` or a multipart file name: its base name, at most
    MAX_TITLE_CHARS characters, no control characters; ``.wav`` added without an extension."""
    if raw is None or not raw.strip():
        return "upload.wav"
    if len(raw) > MAX_TITLE_CHARS:
        raise HttpProblem(
            400, f"title: at most {MAX_TITLE_CHARS} characters, got {len(raw)}", kind="bad-query"
        )
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in raw):
        raise HttpProblem(400, "title: control characters are not allowed", kind="bad-query")
    name = PurePosixPath(raw.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        return "upload.wav"
    if not PurePosixPath(name).suffix:
        name += ".wav"
    return name


def file_name_for(title: str) -> str:
    """The stored file's name: fixed, with the title's extension when it is a plain one (a raw
    ``.ul``/``.al`` recording is told apart by it)."""
    suffix = PurePosixPath(title).suffix
    return _FILE_STEM + (suffix.lower() if _SUFFIX.fullmatch(suffix) else ".wav")


def user_message(error: MediaError, path: Path, title: str) -> str:
    """A MediaError about the stored file, told about the user's file: no server path in it."""
    text = str(error).replace(str(path.parent) + os.sep, "")
    if text.startswith(path.name + ":"):
        text = title + text[len(path.name) :]
    stem = PurePosixPath(title).stem or "upload"
    return re.sub(
        rf"\b{_FILE_STEM}(-[a-z0-9]+)?(\.[a-z0-9]+)\b",
        lambda m: shlex.quote(stem + (m.group(1) or "") + m.group(2)),
        text,
    )


def is_recording_type(content_type: str) -> bool:
    """Whether a raw body of this Content-Type may be a recording: ``audio/*``, ``video/*`` (an
    MP4 or WebM with sound), ``application/ogg`` (RFC 5334) or ``application/octet-stream``.
    Media types are case-insensitive (RFC 9110 §8.3.1).  The type only keeps form posts and text
    out: what the file is, FFmpeg finds from its bytes (``bridge.io.audio_files``)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith(("audio/", "video/")) or media_type in (
        "application/ogg",
        "application/octet-stream",
    )


def unsupported_type(content_type: str) -> HttpProblem:
    return HttpProblem(
        415,
        f"Content-Type {content_type[:100] or 'missing'}: send the recording as audio/* (audio/wav,"
        " audio/mpeg, audio/ogg, audio/mp4, audio/flac, ...), or multipart/form-data with a"
        " 'file' field",
        kind="unsupported-media",
    )


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HttpProblem(400, "Content-Length: expected a byte count", kind="bad-request")
    return int(raw)


def too_large(limit: int) -> HttpProblem:
    return HttpProblem(
        413,
        f"recordings are limited to {limit} bytes ({limit // (1024 * 1024)} MiB)",
        kind="too-large",
    )  # the rest of the body is read and dropped for a while (the server's linger), then cut


class _DiskWriter:
    """Collects received bytes; writes them in WRITE_BLOCK_BYTES blocks in a thread."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.pending = bytearray()
        self.written = 0

    def add(self, data: bytes) -> None:
        self.pending += data

    async def maybe_flush(self, *, final: bool = False) -> None:
        if self.pending and (final or len(self.pending) >= WRITE_BLOCK_BYTES):
            block, self.pending = bytes(self.pending), bytearray()
            await asyncio.to_thread(self.file.write, block)
            self.written += len(block)


def gone() -> HttpProblem:
    """The client went away (or was cut for sending nothing) before its body ended."""
    return HttpProblem(400, "the request body ended early: the client disconnected")


async def receive_raw(request: Request, path: Path, limit: int) -> int:
    """Stream a raw body to ``path``; 413 as soon as more than ``limit`` bytes came."""
    received = 0
    with path.open("wb") as f:
        out = _DiskWriter(f)
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large(limit)
                out.add(chunk)
                await out.maybe_flush()
        except ClientDisconnect:
            raise gone() from None
        await out.maybe_flush(final=True)
    return received


async def receive_multipart(request: Request, path: Path, limit: int) -> tuple[int, str | None]:
    """Stream the ``file`` part of a multipart/form-data body to ``path``; other parts are
    skipped.  Returns the file's size and its file name.  413 past ``limit`` file bytes (or the
    body past ``limit`` + MULTIPART_SLACK_BYTES); 400 for a body that is not multipart."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise HttpProblem(400, "multipart body without a boundary parameter", kind="bad-request")
    header_field = bytearray()
    header_value = bytearray()
    part: dict[str, object] = {}
    found: dict[str, object] = {}

    def on_part_begin() -> None:
        part.clear()
        part["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = cast(dict[bytes, bytes], part["headers"])
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = cast(dict[bytes, bytes], part["headers"])
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == b"file":
            if "name" in found:
                raise HttpProblem(400, "multipart body: send one 'file' field", kind="bad-request")
            found["name"] = disposition.get(b"filename", b"").decode("utf-8", "replace")
            part["file"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("file"):
            out.add(data[start:end])
            if out.written + len(out.pending) > limit:
                raise too_large(limit)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
        max_header_count=16,
        max_header_size=8192,
    )
    body_limit = limit + MULTIPART_SLACK_BYTES
    received = 0
    with path.open("wb") as f:
        out = _DiskWriter(f)
        stream = request.stream()
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except ClientDisconnect:
                raise gone() from None
            received += len(chunk)
            if received > body_limit:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise HttpProblem(
                    400, f"multipart body: cannot parse it ({exc})", kind="bad-request"
                ) from None
            await out.maybe_flush()
        try:
            parser.finalize()
        except FormParserError as exc:
            raise HttpProblem(
                400, f"multipart body: cannot parse it ({exc})", kind="bad-request"
            ) from None
        await out.maybe_flush(final=True)
    if "name" not in found:
        raise HttpProblem(
            400, "multipart body: put the recording in a field named 'file'", kind="bad-request"
        )
    return out.written, cast(str, found["name"]) or None


# -- the uploads folder ----------------------------------------------------------------------------


def _claim_folder(root: Path) -> tuple[Path, int]:
    """A folder for this process under ``root``, locked while the process lives."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    fd = os.open(folder / _LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return folder, fd


def sweep_dead_uploads(root: Path) -> int:
    """Remove process folders under ``root`` whose lock no process holds; returns how many
    uploads (sub-folders) they held."""
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fd = os.open(entry / _LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            # No lock yet: a process that is creating it, or one killed in between.
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > ORPHAN_GRACE_S:
                    removed += _count_uploads(entry)
                    shutil.rmtree(entry, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its process is alive
            os.close(fd)
            continue
        try:
            removed += _count_uploads(entry)
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)
    return removed


def _count_uploads(folder: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for e in folder.iterdir() if e.is_dir())
    return 0
