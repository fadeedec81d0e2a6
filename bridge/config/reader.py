"""The one reader of the bridge's settings: a TOML file, then ``BRIDGE_*`` variables, then options.

Every loader (:mod:`bridge.config.settings` for ``[asr]``, ``[http]``, ...; :mod:`sip_config`
for ``[sip]``) declares its settings as a :data:`Schema` and reads them here, so each setting is
found, converted and complained about the same way:

* the file is ``path``, else the one ``BRIDGE_CONFIG`` names (:func:`config_path`); each table
  belongs to one loader, which reports its unknown settings with the ones it knows;
* a variable that is set and not empty wins over the file, converted by the setting's kind:
  ``int``, ``float``, ``bool`` (``1/0``, ``true/false``, ``yes/no``), ``list`` (comma-separated
  strings) or ``str``.  A variable that does not convert is a problem and hides the file's value
  (the default stays: one problem, about the value that would have been used);
* a command-line option (``overrides``, ``None`` for "not given") wins over both;
* :meth:`Read.value` checks a value's type where it is used (TOML has its own types: ``5`` is no
  string), and a problem names the origin -- ``FILE: section.key``, ``BRIDGE_X`` or ``--opt``.

Problems are collected, never raised here: the loader adds its own checks (ranges, URLs) and
raises one :class:`~bridge.errors.ConfigError` listing them all, before anything starts.  The
environment is passed in, never read here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``BRIDGE_*`` booleans: these spellings, any case.
BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
#: The variable that names the config file when no ``-c FILE`` is given.
CONFIG_ENV = "BRIDGE_CONFIG"

Key = tuple[str, str]  # (section, key): ("asr", "url") is asr.url


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: the variable that may set it (None: the file only) and its kind."""

    env: str | None
    kind: type = str  # str, int, float, bool or list (of strings)


#: A loader's settings: section -> key -> setting.
Schema = Mapping[str, Mapping[str, Setting]]


@dataclass(slots=True)
class Read:
    """What the file, the environment and the options said, and the problems found so far."""

    schema: Schema
    values: dict[Key, tuple[object, str]] = field(default_factory=dict)  # -> (value, origin)
    problems: list[str] = field(default_factory=list)

    def raw(self, section: str, key: str) -> object | None:
        """The value as given (None: not given), for settings with their own shape."""
        found = self.values.get((section, key))
        return None if found is None else found[0]

    def origin(self, section: str, key: str) -> str:
        """Where the value came from (``FILE: sip.port``, ``BRIDGE_SIP_PORT``, ``--port``), or
        ``section.key`` when it was not given."""
        found = self.values.get((section, key))
        return f"{section}.{key}" if found is None else found[1]

    def value(self, section: str, key: str, default: Any) -> Any:
        """The value of the setting's kind (an ``int`` is a ``float`` too; a ``list`` comes back
        a tuple), or ``default`` when not given or of another kind (a problem)."""
        found = self.values.get((section, key))
        if found is None:
            return default
        value, origin = found
        kind = self.schema[section][key].kind
        if kind is list:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            self.problems.append(f"{origin}: expected a list of strings, got {value!r}")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        self.problems.append(f"{origin}: expected {kind.__name__}, got {value!r}")
        return default

    @property
    def from_environment(self) -> bool:
        """Whether any value came from a variable."""
        names = {s.env for settings in self.schema.values() for s in settings.values() if s.env}
        return any(origin in names for _, origin in self.values.values())


def config_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file: ``path`` (``-c FILE``), else the one ``BRIDGE_CONFIG`` names, else none."""
    if path is None and environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return path


def read_settings(
    schema: Schema,
    path: Path | None,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[Key, object] | None = None,
    others: Collection[str] | None = None,
) -> Read:
    """Read ``schema``'s settings from the file at ``path``, ``environ`` and ``overrides``.

    ``others``: the tables another loader reads; every other table of the file is this loader's
    (an unknown one is a problem).  ``None``: only ``schema``'s sections are read, other tables
    are left to their loaders.
    """
    read = Read(schema)
    if path is not None:
        data = read_toml(path, read.problems)
        if data is not None:
            _take_file(data, path, read, others)
    for section, settings in schema.items():
        for key, setting in settings.items():
            raw = environ.get(setting.env, "") if setting.env else ""
            if raw == "":
                continue
            read.values.pop((section, key), None)  # set: the file's value no longer counts
            value = convert(raw, setting.kind, setting.env or "", read.problems)
            if value is not None:
                read.values[(section, key)] = (value, setting.env or "")
    for (section, key), value in (overrides or {}).items():
        if value is not None:
            read.values[(section, key)] = (value, "--" + key.replace("_", "-"))
    return read


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The TOML document at ``path``, or None with the reason added to ``problems``."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: config file not found")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
    return None


def convert(raw: str, kind: type, env: str, problems: list[str]) -> object | None:
    """A variable's text as ``kind``, or None with the problem added to ``problems``."""
    if kind is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind is bool:
        if raw.lower() in BOOLS:
            return BOOLS[raw.lower()]
        problems.append(f"{env}={raw!r}: expected 1/0, true/false, yes/no")
        return None
    try:
        value: object = kind(raw)
    except ValueError:
        problems.append(f"{env}={raw!r}: expected {kind.__name__}")
        return None
    return value


def _tables(data: Mapping[str, Any], known: Collection[str]) -> list[tuple[str, Any]]:
    """Top-level tables, and the ``[a.b]`` tables of an ``a`` that is not a section itself
    (``[ingest.audiosocket]`` is the section ``ingest.audiosocket``)."""
    tables: list[tuple[str, Any]] = []
    for section, table in data.items():
        if (
            section not in known
            and isinstance(table, dict)
            and table
            and all(isinstance(v, dict) for v in table.values())
        ):
            tables.extend((f"{section}.{name}", sub) for name, sub in table.items())
        else:
            tables.append((section, table))
    return tables


def _take_file(
    data: Mapping[str, Any], path: Path, read: Read, others: Collection[str] | None
) -> None:
    for section, table in _tables(data, {*read.schema, *(others or ())}):
        if others is None and section not in read.schema:
            continue
        if others is not None and section in others:
            continue
        if not isinstance(table, dict):
            read.problems.append(f"{path}: [{section}] must be a table")
            continue
        known = read.schema.get(section, {})
        for key, value in table.items():
            if key not in known:
                hint = f" (known: {', '.join(sorted(known))})" if known else " (unknown section)"
                read.problems.append(f"{path}: unknown setting {section}.{key}{hint}")
                continue
            read.values[(section, key)] = (value, f"{path}: {section}.{key}")
