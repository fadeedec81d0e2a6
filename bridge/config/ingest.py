"""``[ingest.*]``: the media forks a PBX streams call audio into (docs/media-forks.md).

Example::

    [ingest.audiosocket]          # Asterisk AudioSocket() / chan_audiosocket over TCP
    enabled = true                # BRIDGE_AUDIOSOCKET_ENABLED
    host = "10.0.0.5"             # BRIDGE_AUDIOSOCKET_HOST (default 127.0.0.1)
    port = 9092                   # BRIDGE_AUDIOSOCKET_PORT
    allowed_sources = ["10.0.0.2"]  # BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES: the PBX
    pair_by = "uuid"              # "uuid": sockets with one UUID are one call; "suffix": see README
    rejoin_s = 5.0                # a socket that drops may come back within this long

AudioSocket has no authentication of its own, so a listener on an address other than loopback
takes connections only from ``allowed_sources`` (the PBX's addresses).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bridge.config.reader import Read, Schema, Setting

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
PAIRINGS = ("uuid", "suffix")


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioSocketConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9092
    allowed_sources: tuple[IpNetwork, ...] = LOOPBACK
    pair_by: str = "uuid"
    rejoin_s: float = 5.0
    start_timeout_s: float = 5.0  # the UUID and the first audio must arrive within this
    idle_timeout_s: float = 10.0  # no frame for this long: the socket dropped

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_sources)


SCHEMA: Schema = {
    "ingest.audiosocket": {
        "enabled": Setting("BRIDGE_AUDIOSOCKET_ENABLED", bool),
        "host": Setting("BRIDGE_AUDIOSOCKET_HOST"),
        "port": Setting("BRIDGE_AUDIOSOCKET_PORT", int),
        "allowed_sources": Setting("BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES", list),
        "pair_by": Setting("BRIDGE_AUDIOSOCKET_PAIR_BY"),
        "rejoin_s": Setting("BRIDGE_AUDIOSOCKET_REJOIN_S", float),
    },
}


def networks(values: tuple[str, ...], origin: str, problems: list[str]) -> tuple[IpNetwork, ...]:
    """``("10.0.0.2", "192.168.1.0/24")`` -> networks; a bad one is a problem."""
    found: list[IpNetwork] = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            problems.append(f"{origin}: {value!r} is not an IP address or network")
    return tuple(found)


def build_audiosocket(read: Read) -> AudioSocketConfig:
    get, problems, section = read.value, read.problems, "ingest.audiosocket"
    sources = get(section, "allowed_sources", None)
    config = AudioSocketConfig(
        enabled=get(section, "enabled", False),
        host=get(section, "host", "127.0.0.1"),
        port=get(section, "port", 9092),
        allowed_sources=(
            LOOPBACK
            if sources is None
            else networks(sources, read.origin(section, "allowed_sources"), problems)
        ),
        pair_by=get(section, "pair_by", "uuid"),
        rejoin_s=get(section, "rejoin_s", 5.0),
    )
    if config.pair_by not in PAIRINGS:
        problems.append(
            f"{read.origin(section, 'pair_by')}: {config.pair_by!r}, expected one of "
            + ", ".join(PAIRINGS)
        )
    if not 0 <= config.port <= 65535:
        problems.append(f"{read.origin(section, 'port')}: {config.port} is not a port")
    if config.rejoin_s < 0:
        problems.append(f"{read.origin(section, 'rejoin_s')}: must be >= 0")
    if (
        config.enabled
        and not _loopback(config.host)
        and all(net.is_loopback for net in config.allowed_sources)
    ):
        problems.append(
            f"ingest.audiosocket listens on {config.host} but takes only loopback sources: "
            "AudioSocket has no authentication, so name the PBX's addresses in "
            "BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES ([ingest.audiosocket] allowed_sources)"
        )
    return config


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
