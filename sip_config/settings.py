"""SIP settings: the ``[sip]`` table of the bridge's TOML file, then ``BRIDGE_SIP_*`` variables.

Read by :mod:`bridge.config.reader`, as the bridge's other tables are: the same file (``-c`` or
``BRIDGE_CONFIG``), the same conversions of the variables, every problem collected and reported
at once (:class:`~bridge.errors.ConfigError` ``.problems``), each naming where the value came
from and what is expected.  The environment is passed in, never read here.

Example::

    [sip]
    enabled = true                # BRIDGE_SIP_ENABLED=0 (or serve --no-sip): no SIP ingest
    host = "127.0.0.1"            # BRIDGE_SIP_HOST: address the workers bind (SIP and RTP)
    public_address = ""           # BRIDGE_SIP_PUBLIC_ADDRESS: address put in Contact/SDP (NAT)
    port = 5080                   # BRIDGE_SIP_PORT: worker k listens on port + k
    dispatcher = "auto"           # BRIDGE_SIP_DISPATCHER: Kamailio in front of the workers,
                                  # "on", "off" or "auto" (on when workers > 1)
    dispatcher_port = 5060        # BRIDGE_SIP_DISPATCHER_PORT: the one SIP address for every
                                  # worker (host:dispatcher_port); needs `kamailio` (Debian)
    transports = ["udp", "tcp"]   # BRIDGE_SIP_TRANSPORTS="udp,tcp" ("tls" too, one worker only)
    tls_port = 5061               # BRIDGE_SIP_TLS_PORT: worker k takes TLS on tls_port + k
    tls_cert_file = ""            # BRIDGE_SIP_TLS_CERT_FILE: PEM certificate (chain)
    tls_key_file = ""             # BRIDGE_SIP_TLS_KEY_FILE: its PEM private key
    rtp_port_min = 40000          # BRIDGE_SIP_RTP_PORT_MIN: split evenly over the workers, each
    rtp_port_max = 40999          # BRIDGE_SIP_RTP_PORT_MAX   share half pjsua, half our receivers
    codecs = ["PCMU", "PCMA", "G722"]  # BRIDGE_SIP_CODECS, in order of preference
    allowed_sources = ["127.0.0.0/8"]  # BRIDGE_SIP_ALLOWED_SOURCES: others get 403
    workers = 1                   # BRIDGE_SIP_WORKERS: pjsua2 processes
    max_calls_per_worker = 4      # BRIDGE_SIP_MAX_CALLS_PER_WORKER: the wheel's cap is 4
    retry_after_s = 5             # BRIDGE_SIP_RETRY_AFTER_S: in 503 answers when full
    direct_role = "caller"        # BRIDGE_SIP_DIRECT_ROLE: who the remote party is
    rtp_timeout_s = 30            # BRIDGE_SIP_RTP_TIMEOUT_S: hang up after this long without
                                  # RTP (not while on hold); 0 = never
    registrar = ""                # BRIDGE_SIP_REGISTRAR="sip:pbx.example.com": register as an
                                  # extension of this PBX (else: an IP trunk, allowed_sources)
    auth_user = "1001"            # BRIDGE_SIP_AUTH_USER: the extension and digest user
    auth_password = "..."         # BRIDGE_SIP_AUTH_PASSWORD (keep it in the environment)
    auth_realm = "*"              # BRIDGE_SIP_AUTH_REALM: "*" answers any realm

    [sip.agents]                  # BRIDGE_SIP_AGENTS="1001=alice,1002=bob"
    "1001" = "alice"              # the extension (To user, else From user) -> the agent who
                                  # sees the call in the dashboards and live API
                                  # (SIPREC: a participant with this AOR user is the agent)

    [[sip.routes]]                # which mode a call gets: see sip_config/routes.py
    user = "tap-*"
    mode = "b2bua"
    target = "sip:{ext}@10.0.0.5:5060"
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config.reader import Read, Setting, config_path, read_settings
from bridge.core.types import LegRole
from bridge.errors import ConfigError
from sip_config.routes import Route, parse_routes

# pjsua2-python 2.15.1: PJSUA_MAX_CALLS is a compile-time 4; maxCalls is clamped silently
# (pjsua2.md §4.1), so more calls need more worker processes.
PJSUA_MAX_CALLS = 4

# Codecs the bridge can tap (pjsua2.md §3); everything else in the wheel stays off.
SUPPORTED_CODECS = ("PCMU", "PCMA", "G722")
TRANSPORTS = ("udp", "tcp", "tls")
# [sip] dispatcher: Kamailio in front of the workers (bridge.sip.dispatcher).
DISPATCHER_MODES = ("auto", "on", "off")
_HOST_TOKEN = re.compile(r"[A-Za-z0-9.:-]+")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSettings:
    """What the SIP workers listen on, accept and how they label what they hear."""

    enabled: bool = True  # `bridge serve` answers SIP from its first run, on loopback
    host: str = "127.0.0.1"
    public_address: str | None = None
    port: int = 5080
    transports: tuple[str, ...] = ("udp",)
    rtp_port_min: int = 40000
    rtp_port_max: int = 40999
    codecs: tuple[str, ...] = SUPPORTED_CODECS
    allowed_sources: tuple[IpNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
    workers: int = 1
    max_calls_per_worker: int = PJSUA_MAX_CALLS
    retry_after_s: int = 5
    direct_role: LegRole = LegRole.CALLER
    agents: tuple[tuple[str, str], ...] = ()  # (SIP user or URI, agent)
    rtp_timeout_s: int = 30
    routes: tuple[Route, ...] = ()
    tls_port: int = 5061  # worker k takes TLS (RFC 3261 §26.2) on tls_port + k
    tls_cert_file: str | None = None  # PEM certificate (chain) the workers present
    tls_key_file: str | None = None  # its PEM private key
    registrar: str | None = None  # register as an extension of this PBX (RFC 3261 §10)
    auth_user: str | None = None
    auth_password: str | None = field(default=None, repr=False)
    auth_realm: str = "*"
    dispatcher: str = "auto"  # one of DISPATCHER_MODES
    dispatcher_port: int = 5060

    def agent_for(self, from_uri: str, to_uri: str) -> str | None:
        """The agent of a call: by the dialed extension (To user), else the caller (From user).

        Keys match a URI's user part (``sip:1001@pbx`` -> ``1001``) or the whole URI.
        """
        table = dict(self.agents)
        for uri in (to_uri, from_uri):
            address = uri.strip().strip("<>").split(";")[0]
            user = address.split(":", 1)[-1].split("@", 1)[0]
            for key in (address, user):
                if key in table:
                    return table[key]
        return None

    def worker_port(self, index: int) -> int:
        """SIP port of worker ``index`` (UDP and TCP share it)."""
        return self.port + index

    @property
    def dispatcher_active(self) -> bool:
        """Whether Kamailio runs in front of the workers (``auto``: when there are several)."""
        return self.dispatcher == "on" or (self.dispatcher == "auto" and self.workers > 1)

    def worker_allowed_sources(self) -> tuple[IpNetwork, ...]:
        """The sources a worker accepts: ``allowed_sources``, plus the dispatcher's address
        when it runs (the workers see every call it forwards come from ``host``; the
        dispatcher checks ``allowed_sources`` itself)."""
        if not self.dispatcher_active:
            return self.allowed_sources
        try:
            own = ipaddress.ip_address(self.host)
        except ValueError:
            return self.allowed_sources
        if any(own in net for net in self.allowed_sources):
            return self.allowed_sources
        return (*self.allowed_sources, ipaddress.ip_network(own))

    def worker_rtp_ports(self, index: int) -> tuple[int, int]:
        """``(first, count)`` of the RTP ports of worker ``index``: an even share of the range."""
        share = (self.rtp_port_max - self.rtp_port_min + 1) // self.workers
        return self.rtp_port_min + index * share, share


# [sip] key -> its variable and kind (bridge.config.reader)
_KEYS: dict[str, Setting] = {
    "enabled": Setting("BRIDGE_SIP_ENABLED", bool),
    "host": Setting("BRIDGE_SIP_HOST"),
    "public_address": Setting("BRIDGE_SIP_PUBLIC_ADDRESS"),
    "port": Setting("BRIDGE_SIP_PORT", int),
    "transports": Setting("BRIDGE_SIP_TRANSPORTS", list),
    "rtp_port_min": Setting("BRIDGE_SIP_RTP_PORT_MIN", int),
    "rtp_port_max": Setting("BRIDGE_SIP_RTP_PORT_MAX", int),
    "codecs": Setting("BRIDGE_SIP_CODECS", list),
    "allowed_sources": Setting("BRIDGE_SIP_ALLOWED_SOURCES", list),
    "workers": Setting("BRIDGE_SIP_WORKERS", int),
    "max_calls_per_worker": Setting("BRIDGE_SIP_MAX_CALLS_PER_WORKER", int),
    "retry_after_s": Setting("BRIDGE_SIP_RETRY_AFTER_S", int),
    "direct_role": Setting("BRIDGE_SIP_DIRECT_ROLE"),
    "agents": Setting("BRIDGE_SIP_AGENTS", list),
    "rtp_timeout_s": Setting("BRIDGE_SIP_RTP_TIMEOUT_S", int),
    "tls_port": Setting("BRIDGE_SIP_TLS_PORT", int),
    "tls_cert_file": Setting("BRIDGE_SIP_TLS_CERT_FILE"),
    "tls_key_file": Setting("BRIDGE_SIP_TLS_KEY_FILE"),
    "registrar": Setting("BRIDGE_SIP_REGISTRAR"),
    "auth_user": Setting("BRIDGE_SIP_AUTH_USER"),
    "auth_password": Setting("BRIDGE_SIP_AUTH_PASSWORD"),
    "auth_realm": Setting("BRIDGE_SIP_AUTH_REALM"),
    "dispatcher": Setting("BRIDGE_SIP_DISPATCHER"),
    "dispatcher_port": Setting("BRIDGE_SIP_DISPATCHER_PORT", int),
    "routes": Setting(None, list),  # [[sip.routes]] tables: TOML only
}


# What each setting does.  The README's SIP settings table is :func:`settings_table`'s output
# (tests/unit/test_readme_sip_table.py compares them and prints the table when they differ).
MEANINGS: dict[str, str] = {
    "enabled": "`bridge serve` answers SIP calls; `false` (or `serve --no-sip`) turns it off",
    "host": (
        "the address the workers bind, SIP and RTP (`serve --sip-host`); for a PBX on the LAN, "
        "this machine's LAN address"
    ),
    "public_address": "the address put in Contact and SDP instead of `host` (behind NAT)",
    "port": "worker k listens on `port + k` (`serve --sip-port`)",
    "transports": "`udp`, `tcp`, `tls` (TLS: one worker only)",
    "rtp_port_min": "first RTP port; the range is split evenly over the workers",
    "rtp_port_max": "last RTP port (a worker's share needs 4 ports per call, plus 4)",
    "codecs": "offered and accepted, in order of preference (`PCMU`, `PCMA`, `G722`)",
    "allowed_sources": "addresses or networks calls may come from (others get 403): add the PBX's",
    "workers": "pjsua2 processes (4 calls each); more than 1: Kamailio in front",
    "max_calls_per_worker": "calls per worker, 1..4 (the pjsua2 wheel's cap)",
    "retry_after_s": "`Retry-After` of the 503 answered when full",
    "direct_role": "the role of the remote party in `direct` mode",
    "agents": "extension=agent pairs (`[sip.agents]` table in the file): who sees the call",
    "rtp_timeout_s": "hang up after this long without RTP (not while on hold); 0: never",
    "routes": "`[[sip.routes]]` tables: which calls get `b2bua` (see Modes)",
    "tls_port": "worker k takes TLS on `tls_port + k`",
    "tls_cert_file": "PEM certificate (chain) for TLS",
    "tls_key_file": "its PEM private key",
    "registrar": "register as an extension of this PBX (`sip:pbx.example.com`)",
    "auth_user": "the extension and digest user for `registrar`",
    "auth_password": "its password (keep it in the environment)",
    "auth_realm": "the digest realm; `*` answers any",
    "dispatcher": "Kamailio in front of the workers: `auto` (when workers > 1), `on`, `off`",
    "dispatcher_port": "Kamailio's port on `host`: the one address for every worker",
}


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ", ".join(_default_text(v) for v in value)
    if isinstance(value, LegRole):
        return value.value
    return str(value)


def settings_table() -> str:
    """The ``[sip]`` settings as a Markdown table: setting, env variable, default, meaning."""
    defaults = SipSettings()
    rows = ["| setting | env | default | meaning |", "| --- | --- | --- | --- |"]
    for key, setting in _KEYS.items():
        env_text = f"`{setting.env}`" if setting.env else "(file only)"
        rows.append(
            f"| `sip.{key}` | {env_text} | {_default_text(getattr(defaults, key))} "
            f"| {MEANINGS[key]} |"
        )
    return "\n".join(rows) + "\n"


SECTION = "sip"
SCHEMA = {SECTION: _KEYS}


def load_sip_settings(path: Path | None, environ: Mapping[str, str]) -> SipSettings:
    """The ``[sip]`` table of ``path`` (else of ``BRIDGE_CONFIG``'s file; other tables are not
    read here), then the environment.

    Raises:
        ConfigError: listing every problem found.
    """
    read = read_settings(SCHEMA, config_path(path, environ), environ)
    settings = settings_from(read)
    if read.problems:
        raise ConfigError(read.problems)
    return settings


def settings_from(read: Read) -> SipSettings:
    """Check what was read; append every problem to ``read.problems``."""
    defaults = SipSettings()
    problems = read.problems

    def get(key: str) -> Any:
        return read.value(SECTION, key, getattr(defaults, key))

    def origin(key: str) -> str:
        return read.origin(SECTION, key)

    transports = tuple(t.lower() for t in get("transports"))
    for t in transports:
        if t not in TRANSPORTS:
            problems.append(f"{origin('transports')}: unknown transport {t!r} (use udp, tcp, tls)")
    if not transports:
        problems.append(f"{origin('transports')}: needs at least one of udp, tcp, tls")
    codecs = tuple(c.upper() for c in get("codecs"))
    for c in codecs:
        if c not in SUPPORTED_CODECS:
            problems.append(
                f"{origin('codecs')}: codec {c!r} is not supported "
                f"(use {', '.join(SUPPORTED_CODECS)})"
            )
    if not codecs:
        problems.append(f"{origin('codecs')}: needs at least one codec")
    networks: list[IpNetwork] = []
    raw_sources = get("allowed_sources")
    if not raw_sources:
        problems.append(
            f"{origin('allowed_sources')}: an empty list refuses every call; use ['0.0.0.0/0'] "
            "to allow all"
        )
    for net in raw_sources:
        if isinstance(net, str):
            try:
                networks.append(ipaddress.ip_network(net, strict=False))
            except ValueError:
                problems.append(
                    f"{origin('allowed_sources')}: {net!r} is not an IP address or network "
                    "(e.g. 10.0.0.0/8)"
                )
        else:
            networks.append(net)
    role_name = get("direct_role")
    try:
        role = role_name if isinstance(role_name, LegRole) else LegRole(role_name)
    except ValueError:
        problems.append(
            f"{origin('direct_role')}: unknown role {role_name!r} "
            f"(use {', '.join(r.value for r in LegRole)})"
        )
        role = defaults.direct_role
    agents: list[tuple[str, str]] = []
    raw_agents = read.raw(SECTION, "agents")  # the [sip.agents] table, or extension=agent items
    if isinstance(raw_agents, dict):
        pairs = [(str(k), v if isinstance(v, str) else "") for k, v in raw_agents.items()]
    else:
        pairs = [tuple(item.partition("=")[::2]) for item in get("agents")]
    for extension, agent in pairs:
        if not extension.strip() or not agent.strip():
            problems.append(
                f"{origin('agents')}: {extension!r}={agent!r} is not extension=agent "
                "(e.g. 1001=alice)"
            )
        else:
            agents.append((extension.strip(), agent.strip()))
    settings = SipSettings(
        enabled=get("enabled"),
        host=get("host"),
        public_address=get("public_address") or None,
        port=get("port"),
        transports=transports,
        rtp_port_min=get("rtp_port_min"),
        rtp_port_max=get("rtp_port_max"),
        codecs=codecs,
        allowed_sources=tuple(networks),
        workers=get("workers"),
        max_calls_per_worker=get("max_calls_per_worker"),
        retry_after_s=get("retry_after_s"),
        direct_role=role,
        agents=tuple(agents),
        rtp_timeout_s=get("rtp_timeout_s"),
        dispatcher=str(get("dispatcher")).lower(),
        dispatcher_port=get("dispatcher_port"),
        routes=_routes(read),
        tls_port=get("tls_port"),
        tls_cert_file=get("tls_cert_file") or None,
        tls_key_file=get("tls_key_file") or None,
        registrar=get("registrar") or None,
        auth_user=get("auth_user") or None,
        auth_password=get("auth_password") or None,
        auth_realm=get("auth_realm"),
    )
    _check_ranges(settings, origin, problems)
    _check_dispatcher(settings, origin, problems)
    return settings


def _routes(read: Read) -> tuple[Route, ...]:
    raw = read.raw(SECTION, "routes")
    return () if raw is None else parse_routes(raw, read.origin(SECTION, "routes"), read.problems)


def _check_ranges(s: SipSettings, origin: Any, problems: list[str]) -> None:
    if not 1 <= s.workers <= 64:
        problems.append(f"{origin('workers')}: must be 1..64, got {s.workers}")
    if not 1 <= s.max_calls_per_worker <= PJSUA_MAX_CALLS:
        problems.append(
            f"{origin('max_calls_per_worker')}: must be 1..{PJSUA_MAX_CALLS} (the pjsua2 wheel's "
            f"compile-time cap; add workers for more calls), got {s.max_calls_per_worker}"
        )
    if not 1 <= s.port or s.port + max(s.workers, 1) - 1 > 65535:
        problems.append(f"{origin('port')}: port + workers - 1 must be in 1..65535, got {s.port}")
    if not 1024 <= s.rtp_port_min <= s.rtp_port_max <= 65535:
        problems.append(
            f"{origin('rtp_port_min')}..{origin('rtp_port_max')}: need "
            f"1024 <= min <= max <= 65535, got {s.rtp_port_min}..{s.rtp_port_max}"
        )
    elif s.workers >= 1:
        share = (s.rtp_port_max - s.rtp_port_min + 1) // s.workers
        # Each call takes 2 ports (RTP + RTCP, from an even port) in each half of a worker's
        # share: pjsua's media transports, and the worker's own receivers (bridge.sip.media).
        need = 2 * (2 * s.max_calls_per_worker + 2)
        if share < need:
            problems.append(
                f"RTP port range {s.rtp_port_min}..{s.rtp_port_max}: {share} port(s) per worker, "
                f"need at least {need} (2 per call for pjsua, 2 for the bridge's receiver)"
            )
    if "tls" in s.transports:
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(s, key)
            if not path:
                problems.append(f"{origin(key)}: needed for transport tls (a PEM file)")
            elif not Path(path).expanduser().is_file():
                problems.append(f"{origin(key)}: {path!r} is not a readable file")
        if s.dispatcher_active:
            problems.append(
                f"{origin('transports')}: tls is served by the workers themselves; with several "
                "workers Kamailio is in front and the bridge does not configure its tls module "
                "(use one worker, dispatcher = 'off', or terminate TLS at your SBC)"
            )
        tls_end = s.tls_port + max(s.workers, 1)
        if not 1 <= s.tls_port or tls_end - 1 > 65535:
            problems.append(f"{origin('tls_port')}: tls_port + workers - 1 must be in 1..65535")
        elif s.tls_port < s.port + s.workers and s.port < tls_end:
            problems.append(
                f"{origin('tls_port')}: {s.tls_port}..{tls_end - 1} overlaps the workers' "
                f"UDP/TCP ports {s.port}..{s.port + s.workers - 1}"
            )
    if s.registrar is not None:
        if not s.registrar.startswith(("sip:", "sips:")):
            problems.append(
                f"{origin('registrar')}: {s.registrar!r} is not a sip: URI (sip:pbx.example.com)"
            )
        if not s.auth_user:
            problems.append(f"{origin('auth_user')}: needed with a registrar (the extension)")
    if s.rtp_timeout_s < 0:
        problems.append(
            f"{origin('rtp_timeout_s')}: must be >= 0 (0: never), got {s.rtp_timeout_s}"
        )
    if s.retry_after_s < 0:
        problems.append(f"{origin('retry_after_s')}: must be >= 0, got {s.retry_after_s}")


def _check_dispatcher(s: SipSettings, origin: Any, problems: list[str]) -> None:
    if s.dispatcher not in DISPATCHER_MODES:
        problems.append(
            f"{origin('dispatcher')}: unknown mode {s.dispatcher!r} (use "
            f"{', '.join(DISPATCHER_MODES)}; auto = Kamailio in front when workers > 1)"
        )
        return
    if not 1 <= s.dispatcher_port <= 65535:
        problems.append(f"{origin('dispatcher_port')}: must be 1..65535, got {s.dispatcher_port}")
    if not s.dispatcher_active:
        return
    if s.port <= s.dispatcher_port < s.port + s.workers:
        problems.append(
            f"{origin('dispatcher_port')}: {s.dispatcher_port} is a worker's port "
            f"({s.port}..{s.port + s.workers - 1}); the dispatcher needs its own"
        )
    try:
        address = ipaddress.ip_address(s.host)
    except ValueError:
        problems.append(
            f"{origin('host')}: the dispatcher (Kamailio) needs an IP address to listen on and "
            f"to put in Record-Route, got {s.host!r}"
        )
        return
    if address.is_unspecified:
        problems.append(
            f"{origin('host')}: the dispatcher (Kamailio) needs the concrete address the PBX "
            f"sends to (it goes into Record-Route), not {s.host}"
        )
    if s.public_address is not None and not _HOST_TOKEN.fullmatch(s.public_address):
        problems.append(
            f"{origin('public_address')}: {s.public_address!r} is not a host name or IP address"
        )
