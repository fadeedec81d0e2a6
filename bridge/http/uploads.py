"""``POST /api/v1/calls``: an uploaded recording transcribed as a live call in this process.

The file goes through :func:`bridge.transcribe.transcribe_file` (the same leg pipeline as a live
call) at real-time pace or fast; the hub sees every event, so the live API and the dashboards
show it like any call.  Uploads run as background tasks, at most ``max_running`` at once (a
request past that gets 503 with Retry-After); each is cancelled when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from bridge.core.types import LegRole
from bridge.errors import BridgeError
from bridge.io.asr_client import AsrEndpoint
from bridge.io.audio_files import open_audio
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.transcribe import transcribe_file
from storage import TranscriptStore

from .tee import PublishingStore

logger = logging.getLogger(__name__)


class UploadRunner:
    """Runs uploads; owns their temporary files and tasks."""

    def __init__(
        self,
        *,
        store: TranscriptStore,
        hub: LiveHub,
        endpoint: AsrEndpoint,
        settings: LegSettings,
        max_running: int = 8,
        on_call_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.endpoint = endpoint
        self.settings = settings
        self.max_running = max_running
        self.on_call_ended = on_call_ended
        self.tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()  # set by close(): transcribe_file ends its call cleanly
        self.failures = 0
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-uploads-")

    @property
    def running(self) -> int:
        return len(self.tasks)

    def save(self, data: bytes, name: str) -> Path:
        """Keep the upload under its own (base) name: it becomes the call's title."""
        safe = Path(name).name.strip() or "upload.wav"
        if not Path(safe).suffix:
            safe += ".wav"
        path = Path(tempfile.mkdtemp(dir=self._dir.name)) / safe
        path.write_bytes(data)
        return path

    async def start(
        self, path: Path, *, fast: bool, roles: Sequence[LegRole], agent: str | None
    ) -> str:
        """Open the file (MediaError if unreadable), start transcribing; return the call id."""
        try:
            audio = open_audio(path)
        except BaseException:
            _remove(path)
            raise
        tee = PublishingStore(self.store, self.hub, agent=agent, on_call_ended=self.on_call_ended)
        task = asyncio.create_task(self._run(audio, tee, path, fast, roles), name="upload")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        waiting: set[asyncio.Future[object]] = {task, tee.call_id}  # type: ignore[arg-type]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if tee.call_id.done():
            return tee.call_id.result()
        task.result()  # raises what stopped it before the call existed
        raise RuntimeError("upload ended before its call was created")

    async def _run(self, audio, tee, path, fast, roles) -> None:  # type: ignore[no-untyped-def]
        try:
            await transcribe_file(
                audio,
                endpoint=self.endpoint,
                store=cast(TranscriptStore, tee),
                settings=self.settings,
                fast=fast,
                roles=roles,
                listener=self.hub.listener,
                stop=self._stop,
            )
        except BridgeError as exc:
            self.failures += 1
            logger.warning("uploaded call %s failed: %s", path.name, exc)
        finally:
            _remove(path)

    async def close(self, *, finish_timeout_s: float = 30.0) -> None:
        """Stop feeding uploads; let their legs finish (calls end ``interrupted``), then cancel."""
        self._stop.set()
        if self.tasks:
            _, late = await asyncio.wait(set(self.tasks), timeout=finish_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._dir.cleanup()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(path.parent)
