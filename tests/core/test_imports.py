"""The import rule of design.md §5: the pure core pulls in no I/O library."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_io() -> None:
    code = (
        "import sys, bridge.core.asr_protocol, bridge.core.transcript, bridge.core.audio, "
        "bridge.core.g711, bridge.core.types, bridge.core.numbers, bridge.errors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'websockets', 'aiosqlite', 'sqlite3', 'socket', 'storage'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
