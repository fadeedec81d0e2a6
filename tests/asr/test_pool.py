"""The pool's rules (bridge/asr/pool.py) as pure logic: placement, failover, admission, health.
The real thing - two vLLM servers, one killed mid-call - is tests/integration/test_asr_pool.py."""

from __future__ import annotations

import asyncio

import pytest

from bridge.asr.client import AsrClient, AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.core.asr_protocol import AsrStream


def endpoint(port: int, max_legs: int | None = None, **kw: object) -> AsrEndpoint:
    return AsrEndpoint(
        url=f"ws://10.0.0.{port}:8000/v1/realtime", model="m", max_legs=max_legs, **kw
    )  # type: ignore[arg-type]


def pool(*budgets: int | None) -> AsrPool:
    return AsrPool(
        [endpoint(i + 1, b) for i, b in enumerate(budgets)], [f"b{i}" for i in range(len(budgets))]
    )


def test_a_new_leg_goes_where_most_budget_is_free() -> None:
    p = pool(2, 4)
    placed = [p.place().name for _ in range(6)]
    # Free (b0, b1) before each: (2,4) (2,3) (2,2): a tie, fewer legs wins; (1,2) (1,1): b0
    # has fewer legs; (0,1).
    assert placed == ["b1", "b1", "b0", "b1", "b0", "b1"]
    assert [b.legs for b in p.backends] == [2, 4]
    assert p.admission_problem() == (
        "transcription capacity is full (6 legs on 2 of 2 ASR servers that are healthy and "
        "keeping up)"
    )


def test_unlimited_servers_share_legs_evenly_first_listed_first() -> None:
    p = pool(None, None, None)
    assert [p.place().name for _ in range(5)] == ["b0", "b1", "b2", "b0", "b1"]
    assert p.max_legs is None and p.admission_problem(100) is None


def test_release_frees_budget() -> None:
    p = pool(1)
    b = p.place()
    assert p.admission_problem() == "transcription capacity is full (1 legs)"
    p.release(b)
    assert p.admission_problem() is None and b.legs == 0


def test_a_failed_server_hands_its_legs_to_a_healthy_one_and_takes_no_new_ones() -> None:
    p = pool(4, 2)
    a = p.place()
    assert a.name == "b0"
    moved = p.move(a, "closed by the server")
    assert moved.name == "b1" and [b.legs for b in p.backends] == [0, 1]
    assert not a.healthy and a.problem == "closed by the server" and a.failures == 1
    assert p.place().name == "b1"  # b0 has more budget, but is unhealthy
    # Admission counts only healthy servers now: b1's 2 are taken.
    assert p.max_legs == 2 and p.admission_problem() is not None
    p.working(a)  # its probe passed
    assert a.healthy and a.problem is None and p.admission_problem() is None
    assert p.place().name == "b0"


def test_a_moved_leg_goes_only_where_budget_is_free() -> None:
    p = pool(1, 1)
    a, b = p.place(), p.place()
    assert (a.name, b.name) == ("b0", "b1")
    # b1 is healthy but full: the leg stays on b0 (buffering, retrying) rather than overload it.
    assert p.move(a, "refused") is a and [x.legs for x in p.backends] == [1, 1]
    p.release(b)
    assert p.move(a, "refused again") is b and [x.legs for x in p.backends] == [0, 1]


def test_move_stays_when_no_other_server_is_healthy() -> None:
    p = pool(2, 2)
    a, b = p.backends
    p.failed(b, "connection refused")
    leg_on = p.place()
    assert leg_on is a
    assert p.move(a, "connection refused") is a  # b is down too: stay, the client backs off
    assert [x.legs for x in p.backends] == [1, 0]
    # Every server is down: admission counts them all, as a lone server's outage did.
    assert p.max_legs == 4 and p.admission_problem() is None
    assert a.failures == 1 and b.failures == 1


def test_a_lone_server_that_fails_keeps_its_legs() -> None:
    p = pool(3)
    a = p.place()
    assert p.move(a, "closed") is a and a.legs == 1 and not a.healthy
    assert p.admission_problem() is None  # nowhere else to go: calls are taken and buffered


def test_a_lagging_server_gets_no_new_legs_and_admission_says_why() -> None:
    p = pool(None, None)
    a, b = p.backends
    a.lagging = 1
    assert p.place() is b and p.place() is b
    assert p.admission_problem() is None
    b.lagging = 2
    assert p.admission_problem() == "every ASR server is behind real time on 3 live leg(s)"
    lone = pool(None)
    lone.backends[0].lagging = 1
    assert lone.admission_problem() == "the ASR server is behind real time on 1 live leg(s)"


def test_new_legs_counted_together() -> None:
    p = pool(1, 1)
    assert p.admission_problem(2) is None
    assert p.admission_problem(3) is not None


def test_servers_must_share_the_step_clock() -> None:
    with pytest.raises(ValueError, match="another step clock"):
        AsrPool([endpoint(1), endpoint(2, delay_ms=960)])
    with pytest.raises(ValueError, match="at least one"):
        AsrPool([])


def test_a_lone_endpoint_is_one_pool_wherever_it_is_used() -> None:
    e = endpoint(9, 2)
    assert AsrPool.of(e) is AsrPool.of(e)
    p = AsrPool.of(e)
    assert AsrPool.of(p) is p and p.backends[0].name == "10.0.0.9:8000"
    assert p.summary() == e.url
    assert pool(1, 1).summary() == "2 ASR servers (b0, b1)"


def test_subscribers_hear_health_changes_once() -> None:
    p = pool(1, 1)
    a = p.backends[0]
    heard: list[bool] = []
    p.subscribe(lambda: heard.append(a.healthy))
    p.failed(a, "refused")
    p.failed(a, "refused again")  # no change: not told again, the reason is the latest
    assert a.problem == "refused again" and a.failures == 1
    p.working(a)
    p.working(a)
    assert heard == [False, True]


async def test_a_leg_cancelled_before_its_task_ran_is_released_once() -> None:
    p = pool(2)
    client = AsrClient(AsrStream("m"), p, lambda event: None)
    client.place()  # as Leg.start does, before the task first runs
    task = asyncio.create_task(client.run())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert p.backends[0].legs == 1  # run() never started: its finally never ran
    client.release()  # Leg.abort's
    client.release()
    assert p.backends[0].legs == 0
