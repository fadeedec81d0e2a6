"""Where uploaded recordings wait on disk: one folder per process, locked while it lives.

Each process keeps its uploads under ``<uploads dir>/<pid>-<random>/`` (one sub-folder per
upload), holding an exclusive ``flock`` on its ``.lock`` file while it lives.  A process killed
mid-upload leaves its folder unlocked: :func:`sweep_dead_uploads` removes it when the next one
starts (and ``bridge serve`` ends the dead calls: ``TranscriptStore.end_dead_calls``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

ORPHAN_GRACE_S = 60.0  # a folder without a lock file is another process starting up, until then
LOCK_NAME = ".lock"


class ProcessFolder:
    """This process's folder under ``root``: made and locked on first use, removed on release."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._path: Path | None = None
        self._lock_fd: int | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path, self._lock_fd = _claim(self.root)
        return self._path

    def release(self) -> None:
        """Remove the folder (if it was made) and drop its lock (blocking: call it in a thread)."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _claim(root: Path) -> tuple[Path, int]:
    """A folder for this process under ``root``, locked while the process lives."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
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
            fd = os.open(entry / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
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
