"""Which package may import what (issue 14; design.md §5): the arrows run one way.

Read from the source (every ``import``, also those inside functions), so a lazy import cannot
hide a dependency.  Each rule names the one place a heavy or outward dependency may live.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for top in ("bridge", "storage", "sip_config") for p in (ROOT / top).rglob("*.py")
)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from . import x`` resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def importers(prefix: str) -> set[str]:
    """The source files (relative paths) that import ``prefix`` or a module under it."""
    return {
        str(p.relative_to(ROOT))
        for p in SOURCES
        if any(m == prefix or m.startswith(prefix + ".") for m in imports(p))
    }


def test_the_scan_sees_the_imports() -> None:
    assert "bridge/sip/worker/endpoint.py" in importers("pjsua2")
    assert "bridge/sip/ingest.py" in importers("bridge.call")


def test_only_the_sip_worker_imports_pjsua2() -> None:
    allowed = ("bridge/sip/worker/", "bridge/sip/pjnative.py", "bridge/sip/media.py")
    assert {p for p in importers("pjsua2") if not p.startswith(allowed)} == set()


@pytest.mark.parametrize("library", ["aiortc", "aioice"])
def test_only_the_webrtc_source_imports_aiortc(library: str) -> None:
    assert {p for p in importers(library) if not p.startswith("bridge/webrtc/")} == set()


def test_the_core_imports_nothing_of_the_project_but_errors() -> None:
    project = ("bridge", "storage", "sip_config")
    for path in (ROOT / "bridge" / "core").rglob("*.py"):
        outward = {
            m
            for m in imports(path)
            if m.split(".")[0] in project
            and not m.startswith(("bridge.core", "bridge.errors"))
            and m != "bridge"
        }
        assert outward == set(), f"{path.relative_to(ROOT)} imports {sorted(outward)}"


def test_only_the_serve_wiring_imports_the_http_routes() -> None:
    """bridge.http is routes: sources, calls, legs and sinks never reach up into it."""
    outside = {
        p for p in importers("bridge.http") if not p.startswith(("bridge/http/", "bridge/app.py"))
    }
    assert outside == set()


def test_storage_and_sip_settings_import_nothing_of_the_bridge_but_errors_and_core() -> None:
    """(sip_config reads its table with the one TOML/env reader, bridge.config.reader.)"""
    allowed = {
        "storage": ("bridge.errors", "bridge.core"),
        "sip_config": ("bridge.errors", "bridge.core", "bridge.config.reader"),
    }
    for top, ok in allowed.items():
        for path in (ROOT / top).rglob("*.py"):
            upward = {
                m
                for m in imports(path)
                if m.startswith("bridge") and not m.startswith(ok) and m != "bridge"
            }
            assert upward == set(), f"{path.relative_to(ROOT)} imports {sorted(upward)}"
