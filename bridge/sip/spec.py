"""What one SIP worker process is told to do: derived from :class:`~sip_config.SipSettings`.

It travels as one JSON argument on the worker's command line (``--spec``), so the worker needs
no config file; the one secret, the registration password, is not in it (command lines are
public in ``ps``) but in the worker's environment, :data:`PASSWORD_ENV`.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass

from sip_config import SipSettings
from sip_config.routes import Route, parse_routes

PASSWORD_ENV = "BRIDGE_SIP_AUTH_PASSWORD"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    index: int
    host: str
    public_address: str | None
    sip_port: int
    transports: tuple[str, ...]
    rtp_port: int  # first RTP port
    rtp_port_range: int  # how many ports from rtp_port this worker may use
    codecs: tuple[str, ...]  # in order of preference
    allowed_sources: tuple[str, ...]  # networks, as text
    max_calls: int
    retry_after_s: int
    rtp_timeout_s: int = 30
    direct_role: str = "caller"  # a LegRole value: the remote party of a direct call
    agent_users: tuple[str, ...] = ()  # [sip.agents] keys: who is an agent in SIPREC metadata
    routes: tuple[dict[str, str], ...] = ()  # [[sip.routes]] tables (sip_config.routes)
    tls_port: int = 5061  # this worker's TLS port, when "tls" is a transport
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    registrar: str | None = None  # register as auth_user (its password: environment only)
    auth_user: str | None = None
    auth_realm: str = "*"

    def route_table(self) -> tuple[Route, ...]:
        problems: list[str] = []
        routes = parse_routes(list(self.routes), "spec.routes", problems)
        if problems:  # checked when the settings were loaded: a bug if it happens here
            raise ValueError("; ".join(problems))
        return routes

    @property
    def bridge_rate_hz(self) -> int:
        """pjsua's conference clock: 16 kHz keeps G.722's high band, 8 kHz is ~3x cheaper for
        G.711-only traffic (pjsua2.md §3).  One rate per endpoint, so per worker."""
        return 16000 if "G722" in self.codecs else 8000

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_sources)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        fields = json.loads(text)
        for name in ("transports", "codecs", "allowed_sources", "agent_users", "routes"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


def worker_spec(settings: SipSettings, index: int) -> WorkerSpec:
    rtp_port, rtp_range = settings.worker_rtp_ports(index)
    return WorkerSpec(
        index=index,
        host=settings.host,
        public_address=settings.public_address,
        sip_port=settings.worker_port(index),
        transports=settings.transports,
        rtp_port=rtp_port,
        rtp_port_range=rtp_range,
        codecs=settings.codecs,
        # Behind Kamailio every call comes from the dispatcher (which checks the real sources).
        allowed_sources=tuple(str(n) for n in settings.worker_allowed_sources()),
        max_calls=settings.max_calls_per_worker,
        retry_after_s=settings.retry_after_s,
        rtp_timeout_s=settings.rtp_timeout_s,
        direct_role=settings.direct_role.value,
        agent_users=tuple(extension for extension, _ in settings.agents),
        routes=tuple(route.as_table() for route in settings.routes),
        tls_port=settings.tls_port + index,
        tls_cert_file=settings.tls_cert_file,
        tls_key_file=settings.tls_key_file,
        registrar=settings.registrar,
        auth_user=settings.auth_user,
        auth_realm=settings.auth_realm,
    )
