"""What one SIP worker process is told to do: derived from :class:`~sip_config.SipSettings`.

It travels as one JSON argument on the worker's command line (``--spec``), so the worker needs
no config file and no environment.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass

from sip_config import SipSettings


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
        for name in ("transports", "codecs", "allowed_sources"):
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
        allowed_sources=tuple(str(n) for n in settings.allowed_sources),
        max_calls=settings.max_calls_per_worker,
        retry_after_s=settings.retry_after_s,
    )
