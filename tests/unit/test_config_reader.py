"""The one TOML/env reader (bridge.config.reader) that the bridge's and the SIP settings use."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.config.reader import Read, Setting, config_path, convert, read_settings
from bridge.errors import ConfigError
from sip_config import load_sip_settings

SCHEMA = {
    "a": {
        "name": Setting("X_NAME"),
        "count": Setting("X_COUNT", int),
        "ratio": Setting("X_RATIO", float),
        "on": Setting("X_ON", bool),
        "items": Setting("X_ITEMS", list),
        "tables": Setting(None, list),  # file only
    },
    "b": {"port": Setting("X_PORT", int)},
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_variables_convert_by_kind() -> None:
    problems: list[str] = []
    assert convert(" 42 ", int, "X_COUNT", problems) == 42
    assert convert("0.5", float, "X_RATIO", problems) == 0.5
    for text, flag in (("1", True), ("TRUE", True), ("yes", True), ("0", False), ("No", False)):
        assert convert(text, bool, "X_ON", problems) is flag, text
    assert convert("udp, tcp,, ", list, "X_ITEMS", problems) == ["udp", "tcp"]
    assert convert("any text", str, "X_NAME", problems) == "any text"
    assert problems == []
    assert convert("two", int, "X_COUNT", problems) is None
    assert convert("half", float, "X_RATIO", problems) is None
    assert convert("maybe", bool, "X_ON", problems) is None
    assert problems == [
        "X_COUNT='two': expected int",
        "X_RATIO='half': expected float",
        "X_ON='maybe': expected 1/0, true/false, yes/no",
    ]


def test_file_then_environment_then_options_each_named_by_origin(tmp_path: Path) -> None:
    path = write(tmp_path, 'sip = "not mine"\n[a]\nname = "file"\ncount = 1\n[b]\nport = 80\n')
    environ = {"X_COUNT": "2", "X_PORT": "", "X_ON": "yes"}  # empty: not set
    read = read_settings(
        SCHEMA,
        path,
        environ,
        overrides={("a", "count"): 3, ("a", "name"): None},
        others=("sip",),
    )
    assert read.problems == []
    assert read.value("a", "name", "default") == "file"
    assert read.origin("a", "name") == f"{path}: a.name"
    assert (read.value("a", "count", 0), read.origin("a", "count")) == (3, "--count")
    assert (read.value("b", "port", 0), read.origin("b", "port")) == (80, f"{path}: b.port")
    assert (read.value("a", "on", False), read.origin("a", "on")) == (True, "X_ON")
    assert read.from_environment
    assert read.value("a", "ratio", 1.5) == 1.5 and read.origin("a", "ratio") == "a.ratio"
    assert read.raw("a", "ratio") is None


def test_values_of_another_kind_are_problems_naming_where_they_are(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[a]\nname = 5\ncount = true\nratio = 2\non = 1\nitems = ["x", 2]\n'
        'tables = [{ user = "u" }]\n',
    )
    read = read_settings(SCHEMA, path, {})
    assert read.value("a", "ratio", 0.0) == 2.0  # an int is a float too
    assert read.value("a", "name", "d") == "d"
    assert read.value("a", "count", 7) == 7  # TOML true is no int
    assert read.value("a", "on", False) is False  # nor is 1 a bool
    assert read.value("a", "items", ()) == ()
    assert read.raw("a", "tables") == [{"user": "u"}]  # shaped by its loader
    assert read.problems == [
        f"{path}: a.name: expected str, got 5",
        f"{path}: a.count: expected int, got True",
        f"{path}: a.on: expected bool, got 1",
        f"{path}: a.items: expected a list of strings, got ['x', 2]",
    ]
    assert not read.from_environment
    assert read_settings(SCHEMA, None, {"X_ITEMS": "p, q"}).value("a", "items", ()) == ("p", "q")


def test_unknown_settings_and_tables_are_problems_of_the_loader_owning_them(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, 'b = 1\n[a]\nnmae = "x"\n[c]\nk = 1\n[sip]\nport = 1\n')
    read = read_settings(SCHEMA, path, {}, others=("sip",))
    assert read.problems == [
        f"{path}: [b] must be a table",
        f"{path}: unknown setting a.nmae (known: count, items, name, on, ratio, tables)",
        f"{path}: unknown setting c.k (unknown section)",
    ]
    # others=None: only the schema's own tables are read ([c], [sip] belong to other loaders).
    only = read_settings({"a": SCHEMA["a"]}, path, {})
    assert only.problems == [
        f"{path}: unknown setting a.nmae (known: {', '.join(sorted(SCHEMA['a']))})"
    ]


def test_a_bad_variable_hides_the_files_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[b]\nport = 80\n")
    read = read_settings(SCHEMA, path, {"X_PORT": "eighty"})
    assert read.value("b", "port", 8080) == 8080
    assert read.problems == ["X_PORT='eighty': expected int"]


@pytest.mark.parametrize(
    "text, problem",
    [("[a\n", "not valid TOML"), (None, "config file not found"), (b"\xff", "cannot read")],
)
def test_unreadable_files_are_one_problem(
    tmp_path: Path, text: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "bridge.toml"
    if isinstance(text, str):
        path.write_text(text)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    read: Read = read_settings(SCHEMA, path, {})
    assert len(read.problems) == 1 and read.problems[0].startswith(f"{path}: {problem}")


def test_the_file_is_the_option_else_bridge_config(tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    assert config_path(None, {}) is None
    assert config_path(None, {"BRIDGE_CONFIG": ""}) is None
    assert config_path(None, {"BRIDGE_CONFIG": str(named)}) == named
    assert config_path(tmp_path / "c.toml", {"BRIDGE_CONFIG": str(named)}) == tmp_path / "c.toml"


def test_both_loaders_read_the_same_file_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, '[serve]\nport = 9000\n[sip]\nport = 6000\nenabled = "no"\n')
    environ = {"BRIDGE_CONFIG": str(path), "HOME": "/h"}
    with pytest.raises(ConfigError) as info:
        load_sip_settings(None, environ)  # BRIDGE_CONFIG names the file for [sip] too
    assert info.value.problems == [f"{path}: sip.enabled: expected bool, got 'no'"]
    path.write_text("[serve]\nport = 9000\n[sip]\nport = 6000\n")
    assert load_sip_settings(None, environ).port == 6000
    assert load_config(None, environ).serve.port == 9000
    bad = {"BRIDGE_PORT": "x", "BRIDGE_SIP_PORT": "x", "HOME": "/h"}
    for load in (load_config, load_sip_settings):
        with pytest.raises(ConfigError) as info:
            load(None, bad)
        [problem] = info.value.problems
        assert problem.endswith("PORT='x': expected int"), problem
