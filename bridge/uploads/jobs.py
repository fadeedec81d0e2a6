"""Upload jobs: a received recording, queued for spare ASR capacity, transcribed as a live call.

:class:`UploadJobs` owns the uploads' files and tasks.  It gives a body a folder to be received
into (:meth:`UploadJobs.receiving_slot`), checks the file off the loop (its header probed in a
thread by :func:`bridge.files.reader.open_audio`), stores its call (active, with no legs yet)
and starts it or queues it by the rule of :mod:`.admission`; it looks at the queue again when an
upload ends and every ``PUMP_INTERVAL_S`` (live legs ending free capacity too).  A running upload
goes through :func:`bridge.transcribe.transcribe_file`, the same leg pipeline as a live call, at
real-time pace or fast, its facts published to the hub (:class:`~bridge.live.tee.PublishingStore`),
so the live API and the dashboards show it like any call.  A cancelled upload ends ``cancelled``
with the finals transcribed so far; at shutdown they end ``interrupted``.

Refusals are :class:`~bridge.errors.UploadRefused`; an adapter turns them into its own answer
by overriding :meth:`UploadJobs.refused` (``bridge.http.uploads``: problem documents).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.asr.pool import AsrPool, AsrTarget
from bridge.core.types import CallId, CallInfo, LegEvent, LegRole, LegSource
from bridge.errors import BridgeError, UploadRefused
from bridge.files.reader import AudioFile, open_audio
from bridge.leg import LegSettings, live_legs
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from bridge.transcribe import transcribe_file
from storage import MEDIA_DURATION_EVENT, TranscriptStore

from .admission import Ticket, UploadLimits, UploadQueue, UploadState
from .folders import ProcessFolder, sweep_dead_uploads

logger = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.25  # how often a waiting queue looks at the ASR capacity again


@dataclass(eq=False, kw_only=True)
class Upload(Ticket):
    """One accepted upload, from the queue to the end of its call."""

    folder: Path
    audio: AudioFile
    title: str
    fast: bool
    roles: tuple[LegRole, ...]
    store: PublishingStore
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cause: str = "interrupted"  # the end cause if ``stop`` is set
    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Accepted:
    call_id: CallId
    state: UploadState
    queue_position: int  # 0: started at once


def live_call_legs() -> int:
    """ASR legs that live calls (SIP, WebRTC) of this process hold now."""
    return sum(1 for leg in live_legs() if leg.info.source is not LegSource.FILE)


class UploadJobs:
    """Receives, queues and runs uploads; owns their files and tasks."""

    def __init__(
        self,
        *,
        store: TranscriptStore,
        hub: LiveHub,
        endpoint: AsrTarget,
        settings: LegSettings,
        directory: Path,
        limits: UploadLimits | None = None,
        on_call_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.endpoint = endpoint
        self.pool = AsrPool.of(endpoint)  # its budget bounds the uploads running
        self.settings = settings
        self.limits = limits or UploadLimits()
        self.on_call_ended = on_call_ended
        self.failures = 0
        self._queue: UploadQueue[Upload] = UploadQueue(self.limits)
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self.root = directory  # the uploads directory, shared by processes
        self._folder = ProcessFolder(directory)
        removed = sweep_dead_uploads(directory)
        if removed:
            logger.warning("removed the files of %d upload(s) left by a process that died", removed)

    @property
    def folder(self) -> Path:
        """This process's folder under the uploads directory (made and locked on first use)."""
        return self._folder.path

    @property
    def running(self) -> int:
        return self._queue.running

    @property
    def queued(self) -> int:
        return self._queue.queued

    @property
    def receiving(self) -> int:
        return self._queue.receiving

    def owns(self, call_id: str) -> bool:
        """Whether ``call_id`` is an upload of this process still queued or running."""
        return self._queue.get(call_id) is not None

    def refused(self, refusal: UploadRefused) -> Exception:
        """What to raise for ``refusal``: itself here; an adapter answers with its own error."""
        return refusal

    @contextlib.asynccontextmanager
    async def receiving_slot(self, token: str) -> AsyncIterator[Path]:
        """A slot to receive one body into (a fresh folder, removed unless the upload is
        accepted); :meth:`refused` when the token or the bridge has too many already."""
        try:
            self._queue.start_receiving(token)
        except UploadRefused as exc:
            raise self.refused(exc) from None
        folder = self.folder / uuid.uuid4().hex
        try:
            folder.mkdir(mode=0o700)
            yield folder
        finally:
            self._queue.stop_receiving(token)
            if not any(u.folder == folder for u in self._queue.accepted()):
                await asyncio.to_thread(shutil.rmtree, folder, True)

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
        """Check the file (MediaError if unusable), store its call, start or queue it
        (:meth:`refused` when it can't)."""
        audio = await asyncio.to_thread(open_audio, path)  # bounded, but file I/O: off the loop
        try:
            self._queue.check_new(audio.channels, self.pool.max_legs, live_call_legs())
        except UploadRefused as exc:
            raise self.refused(exc) from None
        tee = PublishingStore(self.store, self.hub, agent=agent, on_call_ended=self.on_call_ended)
        call_id = CallId(uuid.uuid4().hex)
        now_ms = int(time.time() * 1000)
        upload = Upload(
            call_id=call_id,
            token=token,
            legs=audio.channels,
            folder=path.parent,
            audio=audio,
            title=title,
            fast=fast,
            roles=tuple(roles),
            store=tee,
        )
        self._queue.add(upload)  # before the first await: counted from here on
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
            self._queue.withdraw(upload)
            raise
        self._queue.enqueue(upload)
        self._pump()
        if upload.state is UploadState.QUEUED:
            self._ensure_pump_task()
        return Accepted(call_id, upload.state, self._queue.position(call_id))

    # -- the queue -------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start queued uploads, first come first served, while capacity allows."""
        for upload in self._queue.admit(self.pool.max_legs, live_call_legs()):
            upload.task = asyncio.create_task(
                self._run(upload), name=f"upload-{upload.call_id[:8]}"
            )

    def _ensure_pump_task(self) -> None:
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump_loop(), name="upload-queue")

    async def _pump_loop(self) -> None:
        """While uploads wait: look again when one ends, and every PUMP_INTERVAL_S (live legs
        ending free capacity too)."""
        while self._queue.queued and not self._queue.closing:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUMP_INTERVAL_S)
            self._pump()

    async def _run(self, upload: Upload) -> None:
        try:
            await transcribe_file(
                upload.audio,
                endpoint=self.endpoint,
                store=upload.store,
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
                self._queue.finish(upload)
                upload.ended.set()
                self._wake.set()
                self._pump()

    # -- cancelling ------------------------------------------------------------------------------

    async def cancel(self, call_id: str, *, cause: str = "cancelled") -> bool:
        """Stop a queued or running upload: its call ends ``cause`` with the finals so far.
        True once its call has ended; False if it still finishes after ``cancel_wait_s``."""
        upload = self._queue.get(call_id)
        if upload is None:
            return True
        if upload.state is UploadState.QUEUED:
            self._queue.withdraw(upload)  # (not yet waiting while its call is being stored)
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
        self._queue.closing = True
        self._wake.set()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        for upload in self._queue.waiting():
            with contextlib.suppress(BridgeError):
                await self.cancel(upload.call_id, cause="interrupted")
        running = self._queue.running_uploads()
        tasks = [u.task for u in running if u.task is not None]
        for upload in running:
            upload.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=finish_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await asyncio.to_thread(self._folder.release)
