"""The event loop ``bridge`` commands run on (bridge/cli/runner.py): uvloop's, unless
``BRIDGE_EVENT_LOOP=asyncio``; a bad value is one usage error before anything starts."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import uvloop

from bridge.cli.runner import _run, loop_factory
from bridge.errors import ConfigError


async def on_uvloop() -> int:
    """A command that answers 1 on uvloop's loop, 0 on the standard library's."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return int(isinstance(loop, uvloop.Loop))


def test_commands_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_EVENT_LOOP", raising=False)
    assert loop_factory() is uvloop.new_event_loop
    assert _run(on_uvloop()) == 1


def test_asyncio_chooses_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_EVENT_LOOP", "asyncio")
    assert loop_factory() is None
    assert _run(on_uvloop()) == 0


def test_an_unknown_loop_is_a_config_error_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_EVENT_LOOP", "trio")
    command = on_uvloop()
    with pytest.raises(ConfigError) as caught:
        _run(command)
    assert caught.value.problems == ["BRIDGE_EVENT_LOOP='trio': use uvloop or asyncio"]
    assert inspect.getcoroutinestate(command) == "CORO_CLOSED"  # no "never awaited" warning
