"""The engine's package import stays light: pure users load no websockets and no asyncio.

Issue 14: ``import bridge.engine`` (and its pure modules) must not pull in the websocket server.
``start_engine_server``, ``RunningEngine`` and ``main_asr_server`` load on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys

PURE = (
    "bridge.engine",
    "bridge.engine.config",
    "bridge.engine.align",
    "bridge.engine.vad",
    "bridge.engine.protocol",
    "bridge.engine.recognizer",
    "bridge.engine.whisper_config",
    "bridge.engine.local_agreement",
)
IO = {"asyncio", "websockets", "faster_whisper", "ctranslate2"}
SERVER = {"bridge.engine.server", "bridge.engine.session", "bridge.engine.steps"}


def _loaded_after(imports: str) -> list[str]:
    code = (
        f"import json, sys, {imports}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(IO)!r} "
        f"or m in {sorted(SERVER)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_package_import_loads_no_websockets_or_asyncio() -> None:
    code = "import bridge.engine, sys; assert 'websockets' not in sys.modules, 'websockets'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _loaded_after("bridge.engine") == []


def test_pure_modules_load_no_io() -> None:
    assert _loaded_after(", ".join(PURE)) == []


def test_whisper_loads_faster_whisper_only_with_a_model() -> None:
    assert _loaded_after("bridge.engine.whisper") == []


def test_server_names_load_on_first_use() -> None:
    code = (
        "import sys, bridge.engine as e; "
        "assert 'bridge.engine.server' not in sys.modules; "
        "from bridge.engine import RunningEngine, main_asr_server, start_engine_server; "
        "from bridge.engine.server import RunningEngine as R, start_engine_server as s; "
        "from bridge.engine.cli import main_asr_server as m; "
        "assert (RunningEngine, start_engine_server, main_asr_server) == (R, s, m); "
        "assert 'websockets' in sys.modules; "
        "print(hasattr(e, 'no_such_name'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
