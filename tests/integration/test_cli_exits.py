"""Every ``bridge`` command exits, with its documented code and one ``bridge: error:`` line, on
every error path (issue 13 §2): a subprocess per case, each bounded by a timeout.

Exit codes (README, ``bridge/cli/runner.py``): 1 the work failed (ASR server, storage, audio file, a
port in use), 2 usage or configuration.  Before the fix, ``show ""``, ``export ""`` and an
ambiguous prefix printed their error and then hung: the store's aiosqlite threads were left
running.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import pytest
from bridge_cli import bridge

from bridge.core.types import CallId, CallInfo, LegSource
from storage import TranscriptStore

pytestmark = pytest.mark.integration

TIMEOUT_S = 30  # every case ends in about a second; a hang fails here instead of never

IDS = ("ab" + "1" * 30, "ab" + "2" * 30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with two calls whose ids share the prefix ``ab``, and files that are no store."""
    root = tmp_path_factory.mktemp("cli-exits")

    async def make(path: Path) -> None:
        store = await TranscriptStore.open(path)
        for n, call_id in enumerate(IDS):
            await store.add_call(CallInfo(CallId(call_id), LegSource.FILE, 1000 * (n + 1)))
        await store.close()

    db = root / "calls.db"
    asyncio.run(make(db))
    not_db = root / "notes.db"
    not_db.write_text("these are notes, not an SQLite database\n" * 20)
    wav = root / "a.wav"
    with wave.open(str(wav), "wb") as w:  # a good file: the cases fail elsewhere
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(32000))
    return {"db": db, "not_db": not_db, "root": root, "wav": wav}


def down_asr() -> str:
    return f"ws://127.0.0.1:{free_port()}/v1/realtime"


CASES: list[tuple[str, list[str], int, str]] = [
    # (case, arguments ({db}, {not_db}, {root} filled in), exit code, part of the one line)
    ("no command", [], 2, "the following arguments are required: COMMAND"),
    ("unknown command", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ("calls: no database", ["calls", "--db", "{root}/none.db"], 1, "no transcript database yet"),
    ("calls: not a database", ["calls", "--db", "{not_db}"], 1, "not an SQLite database"),
    ("calls: bad --limit", ["calls", "--limit", "0", "--db", "{db}"], 2, "--limit: expected"),
    ("show: empty id", ["show", "", "--db", "{db}"], 2, "an empty call id"),
    ("show: blank id", ["show", " ", "--db", "{db}"], 2, "an empty call id"),
    ("show: unknown id", ["show", "zz", "--db", "{db}"], 2, "no call 'zz' in"),
    ("show: ambiguous prefix", ["show", "ab", "--db", "{db}"], 2, "'ab' is ambiguous"),
    ("show: no database", ["show", "ab1", "--db", "{root}/none.db"], 1, "no transcript database"),
    ("show: not a database", ["show", "ab1", "--db", "{not_db}"], 1, "not an SQLite database"),
    ("export: empty id", ["export", "", "--db", "{db}"], 2, "an empty call id"),
    ("export: unknown id", ["export", "zz", "--db", "{db}"], 2, "no call 'zz' in"),
    ("export: ambiguous prefix", ["export", "ab", "--db", "{db}"], 2, "'ab' is ambiguous"),
    ("export: bad --format", ["export", "ab1", "-f", "doc", "--db", "{db}"], 2, "invalid choice"),
    ("export: unknown --leg", ["export", "ab1", "--leg", "x", "--db", "{db}"], 2, "leg"),
    (
        "export: unwritable --output",
        ["export", "ab1", "-o", "{root}/no/such/dir/x.json", "--db", "{db}"],
        2,
        "cannot write",
    ),
    ("export: not a database", ["export", "ab1", "--db", "{not_db}"], 1, "not an SQLite"),
    ("transcribe: no file", ["transcribe", "{root}/none.wav", "--db", "{db}"], 1, "no such file"),
    (
        "transcribe: unwritable database",
        ["transcribe", "{wav}", "--db", "/proc/bridge-test.db", "--asr-url", "{asr}"],
        1,
        "opening /proc/bridge-test.db failed",
    ),
    ("transcribe: bad --roles", ["transcribe", "{wav}", "--roles", "boss"], 2, "unknown role"),
    ("check: bad --delay-ms", ["check", "--delay-ms", "500"], 2, "multiple of 80"),
    ("model prepare: no --out", ["model", "prepare", "--delay-ms", "960"], 2, "--out"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_error_path_exits_with_its_code_and_one_line(
    files: dict[str, Path], args: list[str], code: int, message: str
) -> None:
    filled = [a.format(asr=down_asr(), **files) for a in args]
    started = time.monotonic()
    result = bridge(*filled, timeout_s=TIMEOUT_S)  # subprocess.TimeoutExpired: it hung
    assert result.returncode == code, (filled, result.stderr)
    [line] = result.stderr.strip().splitlines() or [""]
    assert line.startswith("bridge: error: ") and message in line, result.stderr
    assert "Traceback" not in result.stderr
    # Well within the exit guard's grace: nothing was left running.
    assert time.monotonic() - started < 15


def test_check_reports_a_server_that_is_down_and_exits_1() -> None:
    """``bridge check`` is a report: its FAIL line names the cause and the fix (on stdout)."""
    result = bridge("check", "--asr-url", down_asr(), timeout_s=TIMEOUT_S)
    assert result.returncode == 1, result.stderr
    assert "FAIL cannot reach http://127.0.0.1:" in result.stdout
    assert "start it with the Procfile's vllm line, or pass --asr-url" in result.stdout
    assert result.stderr == ""


LEAK = textwrap.dedent(
    """
    import sys
    from bridge.cli.runner import run_command
    from bridge.errors import ConfigError
    from storage import TranscriptStore

    async def leaky() -> int:
        store = await TranscriptStore.open(sys.argv[1])  # never closed
        raise ConfigError("failed with its store open")

    raise SystemExit(run_command(leaky()))
    """
)


def test_a_command_that_leaves_its_store_open_still_exits(tmp_path: Path) -> None:
    """The central guard (``bridge.cli.runner.run_command``): a future command that forgets to close
    what it opened still exits, with its own code, and says why it took a moment."""
    script = tmp_path / "leaky.py"
    script.write_text(LEAK)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "leak.db")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2, result.stderr
    assert "bridge: error: failed with its store open" in result.stderr
    assert "_connection_worker_thread" in result.stderr  # the guard names what was left
