"""design.md §5 import rules for SIP: the pure modules do no I/O; only the worker loads pjsua2."""

from __future__ import annotations

import ast
import subprocess
import sys


def modules_after(imports: str, roots: set[str]) -> list[str]:
    code = (
        f"import sys, {imports}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(roots)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(ast.literal_eval(out.stdout))


def test_pure_sip_modules_import_no_io() -> None:
    pure = "bridge.sip.wire, bridge.sip.offer, bridge.sip.policy, bridge.sip.spec, sip_config"
    assert modules_after(pure, {"asyncio", "socket", "pjsua2", "storage", "websockets"}) == []


def test_the_main_process_never_loads_pjsua2() -> None:
    assert modules_after("bridge.sip.ingest", {"pjsua2"}) == []
