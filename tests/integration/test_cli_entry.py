"""The ways in to the command line (issue 14: the CLI is the ``bridge.cli`` package): the
console script pyproject declares and ``python -m bridge`` run the same ``main``, and the
installed ``bridge`` script answers."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

from bridge_cli import bridge

from bridge import __version__
from bridge.cli.runner import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_console_script_is_the_cli_runners_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["bridge"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_python_dash_m_bridge_and_the_installed_script_answer() -> None:
    result = bridge("--version")
    assert (result.returncode, result.stdout) == (0, f"bridge {__version__}\n"), result.stderr
    script = Path(sys.executable).parent / "bridge"
    installed = subprocess.run(
        [script, "calls", "--help"], capture_output=True, text=True, timeout=60
    )
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("usage: bridge calls ")


def test_a_bad_event_loop_setting_is_one_usage_line(tmp_path: Path) -> None:
    result = bridge("calls", "--db", tmp_path / "t.db", env={"BRIDGE_EVENT_LOOP": "trio"})
    assert result.returncode == 2
    assert result.stderr == "bridge: error: BRIDGE_EVENT_LOOP='trio': use uvloop or asyncio\n"
