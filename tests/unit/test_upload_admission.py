"""The upload queue's rule, without I/O: who may send a body, who waits, who starts, when."""

from __future__ import annotations

import pytest

from bridge.core.types import CallId
from bridge.errors import UploadRefused
from bridge.uploads.admission import Ticket, UploadLimits, UploadQueue, UploadState


def ticket(n: int, *, token: str = "t", legs: int = 2) -> Ticket:
    return Ticket(call_id=CallId(f"call-{n}"), token=token, legs=legs)


def accept(queue: UploadQueue[Ticket], upload: Ticket) -> None:
    queue.add(upload)
    queue.enqueue(upload)


def refusal(exc: pytest.ExceptionInfo[UploadRefused]) -> tuple[str, int | None]:
    return exc.value.reason, exc.value.retry_after_s


def test_a_token_may_have_per_token_uploads_receiving_queued_or_running() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(per_token=2))
    queue.start_receiving("alice")
    accept(queue, ticket(1, token="alice"))  # accepted, waiting: still counts
    with pytest.raises(UploadRefused) as exc:
        queue.start_receiving("alice")
    assert refusal(exc) == ("too-many-uploads", 30)
    assert "the limit per token" in str(exc.value) and exc.value.retryable
    queue.start_receiving("bob")  # another token is not held back
    queue.stop_receiving("alice")
    queue.start_receiving("alice")  # one receiving ended: room again
    assert queue.receiving == 2


def test_bodies_received_at_once_are_bounded() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(max_receiving=2))
    queue.start_receiving("a")
    queue.start_receiving("b")
    with pytest.raises(UploadRefused) as exc:
        queue.start_receiving("c")
    assert refusal(exc) == ("busy", 10)
    assert str(exc.value) == "2 uploads are being received already; retry later"


def test_a_full_queue_refuses_bodies_and_uploads_that_would_wait() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(max_queued=1, per_token=9))
    accept(queue, ticket(1))
    with pytest.raises(UploadRefused) as exc:
        queue.start_receiving("t")
    assert refusal(exc) == ("busy", 30)
    assert str(exc.value) == (
        "1 uploads wait for transcription capacity already (the queue's limit); retry later"
    )
    with pytest.raises(UploadRefused):
        queue.check_new(1, max_legs=4, live_legs=0)  # it would wait behind the first


def test_an_upload_that_starts_at_once_needs_no_room_in_the_queue() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(max_queued=0))
    queue.check_new(2, max_legs=4, live_legs=0)  # 2 legs spare: it starts, never waits
    queue.check_new(1, max_legs=None, live_legs=0)
    with pytest.raises(UploadRefused) as exc:
        queue.check_new(2, max_legs=4, live_legs=3)  # 1 leg spare: it would wait
    assert refusal(exc) == ("busy", 30)


def test_more_channels_than_the_budget_are_refused_for_good() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(reserve_legs=3))
    with pytest.raises(UploadRefused) as exc:
        queue.check_new(3, max_legs=4, live_legs=0)
    assert refusal(exc) == ("over-capacity", None) and not exc.value.retryable
    assert str(exc.value) == (
        "a 3-channel recording needs 3 ASR legs; this bridge gives uploads at most 2:"
        " send it as mono"
    )
    queue.check_new(2, max_legs=4, live_legs=0)  # one stereo upload always fits


@pytest.mark.parametrize(
    ("reserve", "max_legs", "budget"),
    [(None, 4, 3), (None, 16, 12), (None, 1, 1), (0, 4, 4), (4, 4, 2), (10, 8, 2)],
)
def test_the_budget_keeps_a_reserve_for_live_calls(
    reserve: int | None, max_legs: int, budget: int
) -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(reserve_legs=reserve))
    assert queue.budget(max_legs) == budget


def test_spare_legs_are_what_the_budget_and_live_calls_leave() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits())
    assert queue.spare_legs(None, live_legs=50) is None  # no stated limit
    assert queue.spare_legs(8, live_legs=0) == 6  # budget 8 - 2
    assert queue.spare_legs(8, live_legs=5) == 3  # live calls first
    accept(queue, ticket(1))
    queue.admit(8, live_legs=0)
    assert queue.spare_legs(8, live_legs=0) == 4
    assert queue.spare_legs(8, live_legs=5) == 1


def test_a_waiting_upload_starts_when_capacity_frees() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(per_token=9))
    first, second = ticket(1), ticket(2)
    accept(queue, first)
    assert queue.admit(max_legs=4, live_legs=0) == [first]
    accept(queue, second)  # a budget of 3 legs, 2 taken
    assert queue.admit(max_legs=4, live_legs=0) == []
    assert first.state is UploadState.RUNNING and second.state is UploadState.QUEUED
    assert (queue.running, queue.queued, queue.position(CallId("call-2"))) == (1, 1, 1)
    assert queue.position(CallId("call-1")) == 0  # running, not waiting
    queue.finish(first)
    assert queue.get(CallId("call-1")) is None
    assert queue.admit(max_legs=4, live_legs=3) == []  # live calls took the legs meanwhile
    assert queue.admit(max_legs=4, live_legs=2) == [second]
    assert second.state is UploadState.RUNNING and queue.queued == 0


def test_max_running_holds_uploads_back_without_a_leg_limit() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(max_running=1, per_token=9))
    first, second = ticket(1, legs=1), ticket(2, legs=1)
    accept(queue, first)
    assert queue.admit(max_legs=None, live_legs=0) == [first]
    accept(queue, second)
    assert queue.admit(max_legs=None, live_legs=0) == []
    queue.finish(first)
    assert queue.admit(max_legs=None, live_legs=0) == [second]


def test_withdrawn_and_closing() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(per_token=9))
    stored, waiting = ticket(1), ticket(2)
    queue.add(stored)  # its call is being stored: counted, not yet waiting
    accept(queue, waiting)
    assert queue.get(CallId("call-1")) is stored and queue.queued == 1
    queue.withdraw(stored)
    queue.withdraw(waiting)
    assert queue.accepted() == [] and queue.queued == 0
    accept(queue, ticket(3))
    queue.closing = True
    assert queue.admit(max_legs=None, live_legs=0) == []
    for step in (lambda: queue.start_receiving("t"), lambda: queue.check_new(1, 4, 0)):
        with pytest.raises(UploadRefused) as exc:
            step()
        assert refusal(exc) == ("busy", None)
        assert str(exc.value) == "the bridge is stopping"


def test_uploads_waiting_together_start_first_come_first_served() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(per_token=9))
    stereo, big, mono = ticket(1), ticket(2), ticket(3, legs=1)
    for upload in (stereo, big, mono):
        accept(queue, upload)
    assert queue.position(CallId("call-2")) == 2 and queue.position(CallId("nope")) == 0
    # 4 legs: a budget of 3, so the second stereo upload waits, and the mono one behind it
    # waits too though one leg is spare (no overtaking).
    assert queue.admit(max_legs=4, live_legs=0) == [stereo]
    assert stereo.state is UploadState.RUNNING and big.state is UploadState.QUEUED
    assert (queue.running, queue.queued, queue.position(CallId("call-2"))) == (1, 2, 1)
    assert queue.admit(max_legs=4, live_legs=0) == []
    queue.finish(stereo)
    assert queue.get(CallId("call-1")) is None
    assert queue.admit(max_legs=4, live_legs=1) == [big, mono]  # 3 legs, 1 live: all fit


def test_live_legs_and_max_running_hold_back_the_first_of_two_waiting() -> None:
    queue: UploadQueue[Ticket] = UploadQueue(UploadLimits(max_running=1, per_token=9))
    first, second = ticket(1, legs=1), ticket(2, legs=1)
    accept(queue, first)
    accept(queue, second)
    assert queue.admit(max_legs=4, live_legs=4) == []  # live calls hold every leg
    assert queue.admit(max_legs=4, live_legs=3) == [first]
    assert queue.admit(max_legs=None, live_legs=0) == []  # one running: max_running
    queue.finish(first)
    assert queue.admit(max_legs=None, live_legs=0) == [second]
