"""Small modules (design.md §5): none of the project's is over 500 lines (issue 14)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for top in ("bridge", "storage", "sip_config")
        for path in (ROOT / top).rglob("*.py")
    }
    assert len(sizes) > 100  # it found the tree
    assert {p: n for p, n in sizes.items() if n > LIMIT} == {}
