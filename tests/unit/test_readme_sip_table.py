"""The README's SIP settings table is what ``sip_config.settings`` says (issue 13 §4)."""

from __future__ import annotations

from pathlib import Path

from sip_config.settings import _KEYS, MEANINGS, SipSettings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- sip-settings: begin -->\n", "<!-- sip-settings: end -->"


def test_every_setting_has_a_meaning_and_a_default() -> None:
    assert set(MEANINGS) == set(_KEYS)
    defaults = SipSettings()
    assert all(hasattr(defaults, key) for key in _KEYS)


def test_readme_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    table = text[start : text.index(END, start)]
    expected = settings_table()
    assert table == expected, f"put this between the README's sip-settings markers:\n{expected}"


def test_the_table_shows_the_defaults_a_newcomer_gets() -> None:
    rows = {row.split(" | ")[0].strip("| `"): row for row in settings_table().splitlines()[2:]}
    assert "| `BRIDGE_SIP_ENABLED` | true |" in rows["sip.enabled"]
    assert "| `BRIDGE_SIP_HOST` | 127.0.0.1 |" in rows["sip.host"]
    assert "| `BRIDGE_SIP_ALLOWED_SOURCES` | 127.0.0.0/8 |" in rows["sip.allowed_sources"]
    assert "| (file only) | none |" in rows["sip.routes"]
