"""Which mode an incoming call gets: the ``[[sip.routes]]`` tables of the bridge's TOML file.

A SIPREC INVITE (``Require: siprec``, RFC 7866 §6.1.1) is always a recording session; every other
INVITE takes the first route whose conditions all match, else mode ``direct`` with
``sip.direct_role``.  Example::

    [[sip.routes]]                 # calls to tap-<ext> pass through the bridge to the PBX
    user = "tap-*"                 # request-URI user, shell pattern (fnmatch)
    mode = "b2bua"
    target = "sip:{ext}@10.0.0.5:5060"   # {user}: the request-URI user; {ext}: what "*" matched
    target_header = "X-Bridge-Target"    # a header that, when present, names the target instead
    agent_role = "agent"           # role of the dialled side (the caller's is `role`)

    [[sip.routes]]                 # a fork from the PBX: the remote party is the customer
    source = "10.0.0.0/8"          # source address of the INVITE
    header = "X-Leg-Role: customer"  # "Name: pattern" on a header's value
    mode = "direct"
    role = "customer"
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.core.types import LegRole

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ROUTE_MODES = ("direct", "b2bua")  # "siprec" is chosen by the INVITE itself
_KEYS = ("user", "source", "header", "mode", "role", "agent_role", "target", "target_header")


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    mode: str = "direct"
    user: str | None = None  # fnmatch pattern on the request-URI user
    source: IpNetwork | None = None
    header: tuple[str, str] | None = None  # (lower-case name, fnmatch pattern on the value)
    role: LegRole = LegRole.CALLER  # the remote (calling) party's leg
    agent_role: LegRole = LegRole.AGENT  # b2bua: the dialled party's leg
    target: str | None = None  # b2bua: URI template, {user} and {ext}
    target_header: str | None = None  # b2bua: header naming the target (wins over target)

    def as_table(self) -> dict[str, str]:
        """The TOML table this route was read from (:func:`parse_routes` reads it back)."""
        table = {"mode": self.mode, "role": self.role.value, "agent_role": self.agent_role.value}
        if self.user is not None:
            table["user"] = self.user
        if self.source is not None:
            table["source"] = str(self.source)
        if self.header is not None:
            table["header"] = f"{self.header[0]}: {self.header[1]}"
        if self.target is not None:
            table["target"] = self.target
        if self.target_header is not None:
            table["target_header"] = self.target_header
        return table

    def matches(self, *, user: str, source_ip: str, headers: Mapping[str, str]) -> bool:
        if self.user is not None and not fnmatch.fnmatchcase(user, self.user):
            return False
        if self.source is not None:
            try:
                if ipaddress.ip_address(source_ip.strip("[]")) not in self.source:
                    return False
            except ValueError:
                return False
        if self.header is not None:
            value = headers.get(self.header[0])
            if value is None or not fnmatch.fnmatchcase(value, self.header[1]):
                return False
        return True

    def b2bua_target(self, *, user: str, headers: Mapping[str, str]) -> str | None:
        """Where a b2bua call is dialled: the target header, else the template, else ``None``."""
        if self.target_header is not None:
            named = headers.get(self.target_header.lower(), "").strip().strip("<>")
            if named:
                return named
        if self.target is None:
            return None
        ext = user
        if self.user is not None and "*" in self.user:
            prefix, _, suffix = self.user.partition("*")
            if user.startswith(prefix) and user.endswith(suffix):
                ext = user[len(prefix) : len(user) - len(suffix)]
        return self.target.replace("{user}", user).replace("{ext}", ext)


def select_route(
    routes: tuple[Route, ...], *, user: str, source_ip: str, headers: Mapping[str, str]
) -> Route | None:
    """The first route whose conditions all match, or ``None`` (mode direct)."""
    return next(
        (r for r in routes if r.matches(user=user, source_ip=source_ip, headers=headers)), None
    )


def parse_routes(raw: object, origin: str, problems: list[str]) -> tuple[Route, ...]:
    """``[[sip.routes]]`` (a list of tables) -> routes; each problem goes to ``problems``."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append(f"{origin}: expected [[sip.routes]] tables, got {raw!r}")
        return ()
    routes = []
    for n, table in enumerate(raw, 1):
        where = f"{origin}[{n}]"
        route = _parse_route(table, where, problems)
        if route is not None:
            routes.append(route)
    return tuple(routes)


def _parse_route(table: dict[str, object], where: str, problems: list[str]) -> Route | None:
    before = len(problems)
    for key in table:
        if key not in _KEYS:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(_KEYS)})")
    for key, value in table.items():
        if key in _KEYS and not isinstance(value, str):
            problems.append(f"{where}.{key}: expected a string, got {value!r}")
    if len(problems) > before:
        return None
    text: dict[str, str] = {k: v for k, v in table.items() if isinstance(v, str)}
    mode = text.get("mode", "direct")
    if mode not in ROUTE_MODES:
        problems.append(
            f"{where}.mode: {mode!r} is not one of {', '.join(ROUTE_MODES)} "
            "(SIPREC sessions are recognised by their Require: siprec)"
        )
    source = None
    if "source" in text:
        try:
            source = ipaddress.ip_network(text["source"], strict=False)
        except ValueError:
            problems.append(f"{where}.source: {text['source']!r} is not an address or network")
    header = None
    if "header" in text:
        name, sep, pattern = text["header"].partition(":")
        if not sep or not name.strip():
            problems.append(f"{where}.header: {text['header']!r} is not 'Name: pattern'")
        else:
            header = (name.strip().lower(), pattern.strip())
    roles = {}
    for key, default in (("role", LegRole.CALLER), ("agent_role", LegRole.AGENT)):
        try:
            roles[key] = LegRole(text.get(key, default.value))
        except ValueError:
            known = ", ".join(r.value for r in LegRole)
            problems.append(f"{where}.{key}: unknown role {text[key]!r} (use {known})")
    if mode == "b2bua" and "target" not in text and "target_header" not in text:
        problems.append(f"{where}: mode b2bua needs target or target_header (where to dial)")
    if "target" in text and not text["target"].startswith(("sip:", "sips:")):
        problems.append(f"{where}.target: {text['target']!r} is not a sip: URI")
    if len(problems) > before:
        return None
    return Route(
        mode=mode,
        user=text.get("user"),
        source=source,
        header=header,
        role=roles["role"],
        agent_role=roles["agent_role"],
        target=text.get("target"),
        target_header=text.get("target_header"),
    )
