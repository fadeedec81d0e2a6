"""``[ingest.*]``: the media forks a PBX streams call audio into (docs/media-forks.md).

Example::

    [ingest.audiosocket]          # Asterisk AudioSocket() / chan_audiosocket over TCP
    enabled = true                # BRIDGE_AUDIOSOCKET_ENABLED
    host = "10.0.0.5"             # BRIDGE_AUDIOSOCKET_HOST (default 127.0.0.1)
    port = 9092                   # BRIDGE_AUDIOSOCKET_PORT
    allowed_sources = ["10.0.0.2"]  # BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES: the PBX
    pair_by = "uuid"              # "uuid": sockets with one UUID are one call; "suffix": see README
    rejoin_s = 5.0                # a socket that drops may come back within this long

    [ingest.websocket]            # the media-fork WebSocket listener (FreeSWITCH, ...)
    enabled = true                # BRIDGE_FORKS_ENABLED
    host = "127.0.0.1"            # BRIDGE_FORKS_HOST
    port = 8081                   # BRIDGE_FORKS_PORT
    protocols = ["freeswitch"]    # BRIDGE_FORKS_PROTOCOLS: which paths answer (/freeswitch, ...)
    # secret: set BRIDGE_FORKS_SECRET; peers send it as ?token=... or Authorization: Bearer
    # jambonz_username / jambonz_password: set BRIDGE_JAMBONZ_USERNAME / _PASSWORD: /jambonz
    # then takes HTTP Basic auth (the listen verb's wsAuth) instead of the secret
    # twilio_auth_token: set BRIDGE_TWILIO_AUTH_TOKEN: /twilio then checks X-Twilio-Signature
    # audiohook_api_key / audiohook_client_secret: set BRIDGE_AUDIOHOOK_API_KEY / _CLIENT_SECRET
    # (base64): /audiohook then checks X-API-KEY and the request signature instead
    public_url = "wss://bridge.example.com"  # BRIDGE_FORKS_PUBLIC_URL: the URL Twilio dials

    [asterisk]                    # the ARI controller: every call of a Stasis app, two legs
    ari_url = "http://10.0.0.2:8088"  # BRIDGE_ARI_URL (Asterisk's http.conf); set: it runs
    ari_user = "bridge"           # BRIDGE_ARI_USER (ari.conf); password: BRIDGE_ARI_PASSWORD
    app = "bridge"                # BRIDGE_ARI_APP: the dialplan's Stasis(bridge)
    format = "slin16"             # BRIDGE_ARI_FORMAT: externalMedia format (ulaw, alaw, slin)
    rtp_host = "10.0.0.5"         # BRIDGE_ARI_RTP_HOST: where the legs' UDP ports are bound
    rtp_advertise = ""            # BRIDGE_ARI_RTP_ADVERTISE: the address Asterisk sends to
    rtp_sources = ["10.0.0.2"]    # BRIDGE_ARI_RTP_SOURCES (default: the ARI host, loopback)

AudioSocket has no authentication of its own, so a listener on an address other than loopback
takes connections only from ``allowed_sources`` (the PBX's addresses).  The WebSocket listener
off loopback needs ``secret`` (FreeSWITCH modules authenticate no other way).
"""

from __future__ import annotations

import base64
import binascii
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
        return allowed(address, self.allowed_sources)


def allowed(address: str, sources: tuple[IpNetwork, ...]) -> bool:
    """Whether IP ``address`` (v4, v6, v4-mapped v6, with or without a zone) is in ``sources``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in sources)


# the paths of the WebSocket listener, /NAME
FORK_PROTOCOLS = ("freeswitch", "jambonz", "jambonz-stt", "asterisk", "twilio", "audiohook")


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkSocketConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8081
    protocols: tuple[str, ...] = FORK_PROTOCOLS
    secret: str | None = None  # a shared secret: ?token= or Authorization: Bearer
    jambonz_username: str | None = None  # /jambonz: HTTP Basic auth (listen's wsAuth)
    jambonz_password: str | None = None
    twilio_auth_token: str | None = None  # /twilio: check X-Twilio-Signature instead of the secret
    audiohook_api_key: str | None = None  # /audiohook: X-API-KEY instead of the secret
    audiohook_client_secret: str | None = None  # base64; set: the upgrade must be signed
    public_url: str | None = None  # the wss:// base URL peers dial (what Twilio signs)
    rejoin_s: float = 5.0
    max_message_bytes: int = 262_144  # one WebSocket message (the protocols send 20-200 ms)

    def guards(self) -> list[str]:
        """How peers authenticate, for the start-up line (empty: nothing, loopback only)."""
        found = ["the shared secret"] if self.secret else []
        if self.jambonz_username:
            found.append("jambonz Basic auth")
        if self.twilio_auth_token:
            found.append("Twilio signatures")
        if self.audiohook_api_key:
            found.append("the AudioHook API key")
        return found


# ARI externalMedia formats (bridge/ingest/rtp.py FORMATS)
ARI_FORMATS = ("ulaw", "alaw", "slin", "slin16")


@dataclass(frozen=True, slots=True, kw_only=True)
class AriConfig:
    ari_url: str | None = None  # http(s)://host:port of Asterisk's HTTP server; None: off
    user: str = "bridge"
    password: str = ""
    app: str = "bridge"  # the Stasis application the dialplan hands calls to
    format: str = "slin16"
    rtp_host: str = "127.0.0.1"  # the legs' UDP ports are bound here
    rtp_advertise: str = "127.0.0.1"  # ... and Asterisk sends to this address
    rtp_sources: tuple[IpNetwork, ...] = ()  # () : the ARI host's addresses and loopback
    request_timeout_s: float = 5.0

    @property
    def enabled(self) -> bool:
        return self.ari_url is not None


SCHEMA: Schema = {
    "ingest.audiosocket": {
        "enabled": Setting("BRIDGE_AUDIOSOCKET_ENABLED", bool),
        "host": Setting("BRIDGE_AUDIOSOCKET_HOST"),
        "port": Setting("BRIDGE_AUDIOSOCKET_PORT", int),
        "allowed_sources": Setting("BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES", list),
        "pair_by": Setting("BRIDGE_AUDIOSOCKET_PAIR_BY"),
        "rejoin_s": Setting("BRIDGE_AUDIOSOCKET_REJOIN_S", float),
    },
    "ingest.websocket": {
        "enabled": Setting("BRIDGE_FORKS_ENABLED", bool),
        "host": Setting("BRIDGE_FORKS_HOST"),
        "port": Setting("BRIDGE_FORKS_PORT", int),
        "protocols": Setting("BRIDGE_FORKS_PROTOCOLS", list),
        "secret": Setting("BRIDGE_FORKS_SECRET"),
        "jambonz_username": Setting("BRIDGE_JAMBONZ_USERNAME"),
        "jambonz_password": Setting("BRIDGE_JAMBONZ_PASSWORD"),
        "twilio_auth_token": Setting("BRIDGE_TWILIO_AUTH_TOKEN"),
        "audiohook_api_key": Setting("BRIDGE_AUDIOHOOK_API_KEY"),
        "audiohook_client_secret": Setting("BRIDGE_AUDIOHOOK_CLIENT_SECRET"),
        "public_url": Setting("BRIDGE_FORKS_PUBLIC_URL"),
        "rejoin_s": Setting("BRIDGE_FORKS_REJOIN_S", float),
    },
    "asterisk": {
        "ari_url": Setting("BRIDGE_ARI_URL"),
        "ari_user": Setting("BRIDGE_ARI_USER"),
        "ari_password": Setting("BRIDGE_ARI_PASSWORD"),
        "app": Setting("BRIDGE_ARI_APP"),
        "format": Setting("BRIDGE_ARI_FORMAT"),
        "rtp_host": Setting("BRIDGE_ARI_RTP_HOST"),
        "rtp_advertise": Setting("BRIDGE_ARI_RTP_ADVERTISE"),
        "rtp_sources": Setting("BRIDGE_ARI_RTP_SOURCES", list),
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


def build_fork_socket(read: Read) -> ForkSocketConfig:
    get, problems, section = read.value, read.problems, "ingest.websocket"
    config = ForkSocketConfig(
        enabled=get(section, "enabled", False),
        host=get(section, "host", "127.0.0.1"),
        port=get(section, "port", 8081),
        protocols=get(section, "protocols", FORK_PROTOCOLS),
        secret=get(section, "secret", None) or None,
        jambonz_username=get(section, "jambonz_username", None) or None,
        jambonz_password=get(section, "jambonz_password", None) or None,
        twilio_auth_token=get(section, "twilio_auth_token", None) or None,
        audiohook_api_key=get(section, "audiohook_api_key", None) or None,
        audiohook_client_secret=get(section, "audiohook_client_secret", None) or None,
        public_url=(get(section, "public_url", None) or "").rstrip("/") or None,
        rejoin_s=get(section, "rejoin_s", 5.0),
    )
    unknown = [name for name in config.protocols if name not in FORK_PROTOCOLS]
    if unknown:
        problems.append(
            f"{read.origin(section, 'protocols')}: unknown {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(FORK_PROTOCOLS)}"
        )
    if not 0 <= config.port <= 65535:
        problems.append(f"{read.origin(section, 'port')}: {config.port} is not a port")
    if config.rejoin_s < 0:
        problems.append(f"{read.origin(section, 'rejoin_s')}: must be >= 0")
    if config.public_url and (
        not config.public_url.startswith(("wss://", "ws://")) or "?" in config.public_url
    ):
        problems.append(
            f"{read.origin(section, 'public_url')}: {config.public_url!r} is not a ws:// or "
            "wss:// URL without a query (the address peers dial, e.g. wss://bridge.example.com)"
        )
    problems.extend(audiohook_problems(config))
    if bool(config.jambonz_username) != bool(config.jambonz_password):
        problems.append(
            "ingest.websocket: set both BRIDGE_JAMBONZ_USERNAME and BRIDGE_JAMBONZ_PASSWORD "
            "(the listen verb's wsAuth) or neither"
        )
    jambonz_auth = bool(config.jambonz_username and config.jambonz_password)
    if (
        config.enabled
        and not _loopback(config.host)
        and not config.secret
        and "jambonz" in config.protocols
        and not jambonz_auth
    ):
        problems.append(
            f"ingest.websocket listens on {config.host} and serves /jambonz with no "
            "authentication: set BRIDGE_JAMBONZ_USERNAME and BRIDGE_JAMBONZ_PASSWORD (the "
            "listen verb's wsAuth) or BRIDGE_FORKS_SECRET"
        )
    if (
        config.enabled
        and not _loopback(config.host)
        and not config.secret
        and any(
            name != "jambonz"
            and not (name == "twilio" and config.twilio_auth_token)
            and not (name == "audiohook" and config.audiohook_api_key)
            for name in config.protocols
        )
    ):
        problems.append(
            f"ingest.websocket listens on {config.host} with no secret: set BRIDGE_FORKS_SECRET "
            "and give it to the PBX in the stream URL (?token=...)"
        )
    return config


def build_ari(read: Read) -> AriConfig:
    get, problems, section = read.value, read.problems, "asterisk"
    url = (get(section, "ari_url", None) or "").rstrip("/") or None
    host = get(section, "rtp_host", "127.0.0.1")
    sources = get(section, "rtp_sources", None)
    config = AriConfig(
        ari_url=url,
        user=get(section, "ari_user", "bridge"),
        password=get(section, "ari_password", None) or "",
        app=get(section, "app", "bridge"),
        format=get(section, "format", "slin16"),
        rtp_host=host,
        rtp_advertise=get(section, "rtp_advertise", None) or host,
        rtp_sources=(
            ()
            if sources is None
            else networks(sources, read.origin(section, "rtp_sources"), problems)
        ),
    )
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(
            f"{read.origin(section, 'ari_url')}: {url!r} is not an http:// or https:// URL "
            "(Asterisk's HTTP server, e.g. http://10.0.0.2:8088)"
        )
    if url is not None and not config.password:
        problems.append(
            "asterisk: ari_url is set but not the ARI user's password: set BRIDGE_ARI_PASSWORD "
            "(the user's password in ari.conf)"
        )
    if config.format not in ARI_FORMATS:
        problems.append(
            f"{read.origin(section, 'format')}: {config.format!r}, expected one of "
            + ", ".join(ARI_FORMATS)
        )
    if config.rtp_advertise in ("0.0.0.0", "::"):
        problems.append(
            f"asterisk: rtp_host is {host}, which Asterisk cannot send to: set rtp_advertise "
            "(BRIDGE_ARI_RTP_ADVERTISE) to the address Asterisk reaches the bridge at"
        )
    return config


def audiohook_problems(config: ForkSocketConfig) -> list[str]:
    """The AudioHook credentials: a client secret is base64 and needs the API key with it."""
    secret = config.audiohook_client_secret
    if secret is None:
        return []
    if not config.audiohook_api_key:
        return ["ingest.websocket: BRIDGE_AUDIOHOOK_CLIENT_SECRET needs BRIDGE_AUDIOHOOK_API_KEY"]
    try:
        base64.b64decode(secret, validate=True)
    except binascii.Error:
        return ["BRIDGE_AUDIOHOOK_CLIENT_SECRET: not base64 (paste it as Genesys shows it)"]
    return []


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
