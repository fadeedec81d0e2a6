"""``asr.backends``: the ASR servers of the pool (:mod:`bridge.asr.pool`).

In the file, one table per server (``asr.url`` is the pool of one; set one or the other)::

    [[asr.backends]]
    name = "gpu-a"                 # logs, metrics, the supervisor view (default host:port)
    url = "ws://10.0.0.11:8000/v1/realtime"
    max_legs = 24                  # legs this server takes at once (0/absent: no limit)
    # model: default asr.model; dialect: default asr.dialect ("vllm" or "openai"; one per pool)
    # api_key_env = "GPU_A_KEY"    # the variable holding its key (default: asr.api_key)

    [[asr.backends]]
    name = "gpu-b"
    url = "ws://10.0.0.12:8000/v1/realtime"
    max_legs = 24

or, every server alike (asr.model, asr.api_key, asr.max_legs each):
``BRIDGE_ASR_BACKENDS="ws://10.0.0.11:8000/v1/realtime,ws://10.0.0.12:8000/v1/realtime"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.config.reader import Read

DIALECTS = ("vllm", "openai")
_KEYS = ("name", "url", "model", "dialect", "max_legs", "api_key_env")


def default_name(url: str) -> str:
    """A server's name when none is given: ``ws://gpu-a:8000/v1/realtime`` -> ``gpu-a:8000``."""
    return urlsplit(url).netloc or url


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendConfig:
    name: str  # default: the URL's host:port
    url: str
    model: str
    api_key: str | None
    max_legs: int  # 0: no limit
    dialect: str = "vllm"


def build_backends(
    read: Read,
    environ: Mapping[str, str],
    *,
    model: str,
    dialect: str = "vllm",
    api_key: str | None,
    max_legs: int,
) -> tuple[BackendConfig, ...]:
    """The configured servers (empty: none listed), every problem added to ``read.problems``."""
    raw = read.raw("asr", "backends")
    if raw is None:
        return ()
    origin, problems = read.origin("asr", "backends"), read.problems
    if not isinstance(raw, list) or not raw:
        problems.append(f"{origin}: expected a list of servers ([[asr.backends]] tables or URLs)")
        return ()
    backends: list[BackendConfig] = []
    for n, item in enumerate(raw, 1):
        where = f"{origin} #{n}"
        entry: Mapping[str, object] = {"url": item} if isinstance(item, str) else item
        if not isinstance(entry, Mapping):
            problems.append(f'{where}: expected a table with url = "ws://...", got {item!r}')
            continue
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            problems.append(
                f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})"
            )
        url, name = entry.get("url"), entry.get("name")
        budget = entry.get("max_legs", max_legs)
        spoken = entry.get("dialect", dialect)
        key_env = entry.get("api_key_env")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            problems.append(
                f"{where}: url {url!r}: expected ws://host:port/v1/realtime (or wss://)"
            )
            continue
        if name is not None and (not isinstance(name, str) or not name.strip()):
            problems.append(f"{where}: name {name!r}: expected a non-empty string")
        if not isinstance(name, str) or not name.strip():
            name = default_name(url)
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            problems.append(f"{where}: max_legs {budget!r}: expected an integer >= 0 (0: no limit)")
            budget = 0
        if spoken not in DIALECTS:
            problems.append(f"{where}: dialect {spoken!r}: expected one of {', '.join(DIALECTS)}")
        key = api_key
        if key_env is not None:
            if not isinstance(key_env, str) or not environ.get(key_env):
                problems.append(f"{where}: api_key_env {key_env!r} names no variable that is set")
            else:
                key = environ[key_env]
        served = entry.get("model", model)
        if not isinstance(served, str) or not served:
            problems.append(f"{where}: model {served!r}: expected the served model's name")
            served = model
        backends.append(
            BackendConfig(
                name=name, url=url, model=served, api_key=key, max_legs=budget, dialect=str(spoken)
            )
        )
    _check_unique(backends, origin, problems)
    spoken_by = {b.dialect for b in backends} & set(DIALECTS)  # a bad one is told above
    if len(spoken_by) > 1:
        # A leg's session is of one dialect and moves between the servers when one fails.
        problems.append(
            f"{origin}: the servers speak {' and '.join(sorted(spoken_by))}: every server of the "
            "pool must speak one dialect"
        )
    return tuple(backends)


def _check_unique(backends: list[BackendConfig], origin: str, problems: list[str]) -> None:
    """Two entries for one server would count its budget twice; two names, confuse its metrics."""
    for what, values in (
        ("url", [b.url.rstrip("/") for b in backends]),
        ("name", [b.name for b in backends]),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                problems.append(
                    f"{origin}: {what} {value!r} is listed twice (a name defaults to the URL's "
                    "host:port)"
                    if what == "name"
                    else f"{origin}: {what} {value!r} is listed twice"
                )
            seen.add(value)
