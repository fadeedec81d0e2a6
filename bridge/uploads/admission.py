"""Which uploads may come in, wait and run: the counts, the FIFO queue and the capacity rule.

Sans-I/O (design.md §5): plain methods on the event loop; no files, tasks or clock.  The caller
(:class:`bridge.uploads.jobs.UploadJobs`) says what the ASR endpoint takes (``max_legs``) and how
many legs live calls hold now, and runs what :meth:`UploadQueue.admit` hands back.

The rule: live calls come first.
* A body may be received while its token has fewer than ``per_token`` uploads receiving, queued
  or running, fewer than ``max_receiving`` bodies come in at once, and the queue has room.
* An upload of N channels takes N ASR legs.  It starts when no upload waits before it (first come,
  first served), fewer than ``max_running`` run, and N legs are spare: within the uploads' budget
  (``max_legs`` less ``reserve_legs``, a quarter by default, kept for live calls; never less than
  one stereo upload's worth) and within what live SIP/WebRTC legs leave free.  An endpoint that
  states no ``max_legs`` bounds uploads by ``max_running`` alone.
* Otherwise it waits in the queue, at most ``max_queued`` of them; past that, or with more
  channels than the budget, it is refused (:class:`~bridge.errors.UploadRefused`).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.core.types import CallId
from bridge.errors import UploadRefused

BUSY = "busy"
TOO_MANY_UPLOADS = "too-many-uploads"
OVER_CAPACITY = "over-capacity"


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


class UploadState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"


@dataclass(eq=False, kw_only=True)
class Ticket:
    """An accepted upload as the queue sees it: whose it is, the legs it takes, where it is."""

    call_id: CallId
    token: str
    legs: int
    state: UploadState = UploadState.QUEUED


T = TypeVar("T", bound=Ticket)


class UploadQueue(Generic[T]):
    """The uploads receiving, waiting and running, and the rule that moves them (module doc)."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.closing = False  # set once: nothing is received or started any more
        self._waiting: deque[T] = deque()
        self._running: list[T] = []
        self._accepted: dict[str, T] = {}  # by call id: queued or running (or being stored)
        self._receiving: dict[str, int] = {}  # token -> bodies being received

    # -- counts -----------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def receiving(self) -> int:
        return sum(self._receiving.values())

    def get(self, call_id: str) -> T | None:
        """The accepted upload of ``call_id``, queued or running; None when there is none."""
        return self._accepted.get(call_id)

    def accepted(self) -> list[T]:
        return list(self._accepted.values())

    def waiting(self) -> list[T]:
        return list(self._waiting)

    def running_uploads(self) -> list[T]:
        return list(self._running)

    def position(self, call_id: str) -> int:
        """1 for the next upload to start, 2 after it, ...; 0 if ``call_id`` does not wait."""
        for n, upload in enumerate(self._waiting, 1):
            if upload.call_id == call_id:
                return n
        return 0

    # -- receiving --------------------------------------------------------------------------------

    def start_receiving(self, token: str) -> None:
        """Count one more body of ``token`` coming in, or refuse it."""
        limits = self.limits
        if self.closing:
            raise _stopping()
        of_token = self._receiving.get(token, 0) + sum(
            1 for u in self._accepted.values() if u.token == token
        )
        if of_token >= limits.per_token:
            raise UploadRefused(
                f"this token has {limits.per_token} uploads receiving, queued or running (the"
                " limit per token); wait for one to end, or cancel one with DELETE",
                reason=TOO_MANY_UPLOADS,
                retry_after_s=30,
            )
        if self.receiving >= limits.max_receiving:
            raise UploadRefused(
                f"{self.receiving} uploads are being received already; retry later",
                reason=BUSY,
                retry_after_s=10,
            )
        if len(self._waiting) >= limits.max_queued:
            raise self._queue_full()
        self._receiving[token] = self._receiving.get(token, 0) + 1

    def stop_receiving(self, token: str) -> None:
        self._receiving[token] -= 1
        if not self._receiving[token]:
            del self._receiving[token]

    # -- accepting and starting -------------------------------------------------------------------

    def budget(self, max_legs: int) -> int:
        """ASR legs all uploads together may use: the capacity less the live calls' reserve
        (at least enough for one stereo upload, where the server takes two legs)."""
        reserve = self.limits.reserve_legs
        if reserve is None:
            reserve = max_legs // 4
        return max(max_legs - reserve, min(2, max_legs))

    def spare_legs(self, max_legs: int | None, live_legs: int) -> int | None:
        """Legs a new upload may take now, with ``live_legs`` held by live calls; None: the ASR
        endpoint states no limit."""
        if max_legs is None:
            return None
        ours = sum(u.legs for u in self._running)
        return min(self.budget(max_legs) - ours, max_legs - live_legs - ours)

    def check_new(self, legs: int, max_legs: int | None, live_legs: int) -> None:
        """Refuse an upload of ``legs`` channels that could never run here, or that would have
        to wait in a full queue."""
        if max_legs is not None and legs > self.budget(max_legs):
            raise UploadRefused(
                f"a {legs}-channel recording needs {legs} ASR legs; this bridge gives uploads at"
                f" most {self.budget(max_legs)}: send it as mono",
                reason=OVER_CAPACITY,
            )
        starts = not self._waiting and self._fits(legs, self.spare_legs(max_legs, live_legs))
        if not starts and len(self._waiting) >= self.limits.max_queued:
            raise self._queue_full()
        if self.closing:
            raise _stopping()

    def add(self, upload: T) -> None:
        """Count ``upload`` from now on (its token's uploads, :meth:`get`); its call is being
        stored, so it does not wait yet: :meth:`enqueue` it next, or :meth:`withdraw` it."""
        self._accepted[upload.call_id] = upload

    def enqueue(self, upload: T) -> None:
        self._waiting.append(upload)

    def admit(self, max_legs: int | None, live_legs: int) -> list[T]:
        """The uploads to start now, first come first served (the first waiting one starts
        first, none overtakes it), while capacity allows; counted as running from here on."""
        started: list[T] = []
        while self._waiting:
            upload = self._waiting[0]
            if not self._fits(upload.legs, self.spare_legs(max_legs, live_legs)):
                break
            self._waiting.popleft()
            upload.state = UploadState.RUNNING
            self._running.append(upload)
            started.append(upload)
        return started

    def finish(self, upload: T) -> None:
        """A running upload ended."""
        self._running.remove(upload)
        self._accepted.pop(upload.call_id, None)

    def withdraw(self, upload: T) -> None:
        """Forget an upload that has not started: cancelled, or its call could not be stored."""
        if upload in self._waiting:
            self._waiting.remove(upload)
        self._accepted.pop(upload.call_id, None)

    # -- internals --------------------------------------------------------------------------------

    def _fits(self, legs: int, spare: int | None) -> bool:
        """Whether an upload of ``legs`` may run now, with ``spare`` legs (None: no limit)."""
        if self.closing or len(self._running) >= self.limits.max_running:
            return False
        return spare is None or spare >= legs

    def _queue_full(self) -> UploadRefused:
        return UploadRefused(
            f"{len(self._waiting)} uploads wait for transcription capacity already (the queue's"
            " limit); retry later",
            reason=BUSY,
            retry_after_s=30,
        )


def _stopping() -> UploadRefused:
    return UploadRefused("the bridge is stopping", reason=BUSY)
