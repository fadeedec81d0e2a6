"""Whether a worker takes an incoming call, and how an ended call is labelled (sans-I/O)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bridge.errors import RemoteProtocolError
from bridge.sip.offer import choose_codec, parse_sdp, sdp_body

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 3261 §21 reason phrases of the answers the bridge gives itself.
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    415: "Unsupported Media Type",
    488: "Not Acceptable Here",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The final answer to an INVITE: 200 with ``codec``, or a refusal with its reason."""

    status: int
    reason: str
    codec: str | None = None
    retry_after_s: int | None = None  # for 503 (RFC 3261 §20.33)

    @property
    def accepted(self) -> bool:
        return self.status == 200


def source_allowed(source_ip: str, allowed: tuple[IpNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(source_ip.strip("[]"))
    except ValueError:
        return False
    return any(address in net for net in allowed)


def decide(
    *,
    source_ip: str,
    whole_msg: str,
    active_calls: int,
    max_calls: int,
    allowed_sources: tuple[IpNetwork, ...],
    codecs: tuple[str, ...],
    retry_after_s: int,
) -> Decision:
    """Answer an INVITE: 403 for a disallowed source, 503 when full, 400/488 for the offer."""
    if not source_allowed(source_ip, allowed_sources):
        return Decision(403, f"Forbidden (source {source_ip} not allowed)")
    if active_calls >= max_calls:
        return Decision(
            503, "Service Unavailable (all call slots busy)", retry_after_s=retry_after_s
        )
    try:
        body = sdp_body(whole_msg)
        if body is None:
            # RFC 3261 §13.2.1: an INVITE without an offer gets ours in the 200; pjsua does that.
            return Decision(200, "OK", codec=codecs[0])
        codec = choose_codec(parse_sdp(body), codecs)
    except RemoteProtocolError as exc:
        status = exc.status_hint or 400
        return Decision(status, f"{REASONS.get(status, 'Bad Request')} ({exc})")
    return Decision(200, "OK", codec=codec)


def end_cause(*, confirmed: bool, hung_up_locally: str | None, status: int) -> str:
    """The stored end cause of a call pjsua reports DISCONNECTED with ``status``.

    ``hung_up_locally`` is the bridge's own cause when it ended the call (e.g. ``bridge-stopping``).
    """
    if hung_up_locally:
        return hung_up_locally
    if confirmed:
        return "bye-remote"  # the peer's BYE ends a confirmed dialog (RFC 3261 §15)
    if status == 487:
        return "cancel"  # RFC 3261 §9.2: CANCEL -> 487 Request Terminated for the INVITE
    return "error"
