"""The event loop ``bridge`` commands run on (bridge/cli/runner.py): uvloop's, unless
``BRIDGE_EVENT_LOOP=asyncio``; a bad value is one usage error before anything starts."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from bridge.cli.runner import _run, loop_factory
from bridge.errors import ConfigError


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_commands_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_EVENT_LOOP", raising=False)
    assert loop_factory() is uvloop.new_event_loop
    assert issubclass(_run(loop_type()), uvloop.Loop)


def test_asyncio_chooses_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_EVENT_LOOP", "asyncio")
    assert loop_factory() is None
    ran = _run(loop_type())
    assert not issubclass(ran, uvloop.Loop) and issubclass(ran, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_a_config_error_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_EVENT_LOOP", "trio")
    command = loop_type()
    with pytest.raises(ConfigError) as caught:
        _run(command)
    assert caught.value.problems == ["BRIDGE_EVENT_LOOP='trio': use uvloop or asyncio"]
    assert command.cr_frame is None  # closed, never started: no "never awaited" warning
