"""The decode scheduler: one worker, urgent decodes jump the queue, errors come back."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.engine.scheduler import DecodeScheduler


async def test_urgent_requests_go_before_waiting_partial_ones() -> None:
    order: list[str] = []
    gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        scheduler = DecodeScheduler(pool, 1)

        def work(name: str) -> None:
            if name == "busy":
                gate.wait(5)
            order.append(name)

        flags = {"partial-1": False, "partial-2": False, "urgent": True}
        busy = asyncio.create_task(scheduler.run(lambda: work("busy"), urgent=lambda: False))
        await asyncio.sleep(0.01)
        tasks = [
            asyncio.create_task(
                scheduler.run(lambda n=name: work(n), urgent=lambda n=name: flags[n])
            )
            for name in flags
        ]
        await asyncio.sleep(0.01)
        assert scheduler.waiting == 3
        flags["partial-2"] = True  # became urgent while waiting
        gate.set()
        await asyncio.gather(busy, *tasks)
    assert order == ["busy", "partial-2", "urgent", "partial-1"]


async def test_errors_and_cancellation() -> None:
    with ThreadPoolExecutor(1) as pool:
        scheduler = DecodeScheduler(pool, 1)

        def boom() -> None:
            raise ValueError("bad audio")

        with pytest.raises(ValueError, match="bad audio"):
            await scheduler.run(boom, urgent=lambda: True)
        gate = threading.Event()
        running = asyncio.create_task(
            scheduler.run(lambda: gate.wait(5) and None, urgent=lambda: True)
        )
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(scheduler.run(lambda: None, urgent=lambda: True))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.sleep(0.01)
        assert scheduler.waiting == 0
        gate.set()
        await running
        await scheduler.run(lambda: None, urgent=lambda: False)  # still serving
