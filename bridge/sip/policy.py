"""Whether a worker takes an incoming call, and how an ended call is labelled (sans-I/O)."""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from bridge.core.types import EndCause, target_cause
from bridge.errors import RemoteProtocolError
from bridge.sip.message import SipMessage
from bridge.sip.multipart import split_body
from bridge.sip.offer import SdpOffer, choose_codec, parse_sdp, sdp_body
from bridge.sip.siprec import RecordingSession, parse_siprec_invite

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
    recording: RecordingSession | None = None  # a SIPREC offer's streams and participants
    offer: SdpOffer | None = None  # the INVITE's SDP offer (None: an offerless INVITE)

    @property
    def accepted(self) -> bool:
        return self.status == 200


class AcceptRate:
    """At most ``per_second`` calls taken in any second (a sliding window of their start times).

    Each call opens and closes pjsua media sockets, and pjlib's ioqueue keeps a closed
    socket's slot for 500 ms: calls taken faster than that empty its free list and it asserts
    (docs/pjsua2.md P13).  Four slots per worker make more than a few new calls a second no
    PBX's; the ones past it get 503 with Retry-After, which a PBX retries or sends elsewhere."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._taken: deque[float] = deque()

    def take(self, now: float) -> bool:
        """Whether a call may be taken at ``now`` (monotonic seconds); counts it if so."""
        while self._taken and now - self._taken[0] >= 1.0:
            self._taken.popleft()
        if len(self._taken) >= self.per_second:
            return False
        self._taken.append(now)
        return True


def unreadable_answer(message: SipMessage) -> str | None:
    """Why the SDP answer in this in-dialog request or response must not reach pjmedia, or None.

    Offers (INVITE, UPDATE) are read in ``onIncomingCall`` and ``onCallRxOffer`` and refused
    with 488.  An answer gets no callback before pjmedia builds streams from it: the ACK to our
    offer in a 200 (an INVITE without SDP, RFC 3264 §5; the bridge sends no offer in a reliable
    18x, so no PRACK carries an answer), or a b2bua target's 18x/2xx.  pjmedia aborts the
    process on some (docs/pjsua2.md P9, P14), so the worker drops those
    (:class:`bridge.sip.pjnative.AnswerGuard`) and the call ends as if the message was lost.
    An ACK is never answered (RFC 3261 §17.1.1.3), so dropping one refuses nothing.
    """
    start = message.start_line
    if not start.startswith(("SIP/", "ACK ")):
        return None
    try:
        sdp = split_body(message.header("content-type") or "", message.body).get("application/sdp")
        if sdp is not None:
            parse_sdp(sdp, require_connection=False)
    except RemoteProtocolError as exc:
        return str(exc)
    return None


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
    siprec: bool = False,
    slots_needed: int = 1,
    asr_full: bool = False,
) -> Decision:
    """Answer an INVITE: 403 for a disallowed source, 400/415/488 for the offer, 503 when full.

    A stranger's body is never read (403 first); a bad offer gets its own status even when the
    bridge is full, so a PBX admin sees what is wrong with it rather than a busy signal.

    ``siprec``: the INVITE requires it (RFC 7866 §6.1.1), so its body is multipart SDP +
    rs-metadata.  ``slots_needed``: pjsua calls the call takes (a b2bua call two).
    ``asr_full``: the ASR side runs as many legs as it takes (design.md §4: refuse before the
    GPUs saturate).
    """
    if not source_allowed(source_ip, allowed_sources):
        return Decision(403, f"Forbidden (source {source_ip} not allowed)")
    recording, offer, codec = None, None, codecs[0]
    try:
        if siprec:
            recording = parse_siprec_invite(whole_msg)
            offer = recording.offer
        else:
            body = sdp_body(whole_msg)
            # RFC 3261 §13.2.1: an INVITE without an offer gets ours in the 200 (pjsua).
            offer = parse_sdp(body) if body is not None else None
        if offer is not None:
            codec = choose_codec(offer, codecs)
    except RemoteProtocolError as exc:
        status = exc.status_hint or 400
        return Decision(status, f"{REASONS.get(status, 'Bad Request')} ({exc})")
    if active_calls + slots_needed > max_calls:
        return Decision(
            503, "Service Unavailable (all call slots busy)", retry_after_s=retry_after_s
        )
    if asr_full:
        return Decision(
            503, "Service Unavailable (transcription capacity full)", retry_after_s=retry_after_s
        )
    return Decision(200, "OK", codec=codec, recording=recording, offer=offer)


def end_cause(
    *, side: str, mode: str, confirmed: bool, status: int, local_cause: str | None
) -> str:
    """The stored end cause of a call whose ``side`` ("caller": the INVITE we answered,
    "agent": the b2bua's dialled side) pjsua reported DISCONNECTED first, with ``status``.

    ``local_cause`` is the bridge's own reason when it ended the call (``bridge-stopping``,
    ``rtp-timeout``, ``target-failed``).
    """
    if local_cause:
        return local_cause
    if side == "agent":
        # RFC 3261 §15: a BYE ends a confirmed dialog; before that, the callee's final answer.
        return EndCause.BYE_AGENT if confirmed else target_cause(status)
    if confirmed:
        return EndCause.BYE_CALLER if mode == "b2bua" else EndCause.BYE_REMOTE
    if status == 487:
        return EndCause.CANCEL  # RFC 3261 §9.2: CANCEL -> 487 Request Terminated for the INVITE
    return EndCause.ERROR
