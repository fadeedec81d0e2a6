"""Admission and end causes (bridge.sip.policy): pure."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.sip.policy import Decision, decide, end_cause, source_allowed

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
INVITE = "INVITE sip:b@h SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n"
SDP = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP {pts}\r\n"


def run(
    source: str = "127.0.0.1", pts: str = "0", active: int = 0, body: str | None = None
) -> Decision:
    return decide(
        source_ip=source,
        whole_msg=INVITE + (SDP.format(pts=pts) if body is None else body),
        active_calls=active,
        max_calls=2,
        allowed_sources=LOOPBACK,
        codecs=("PCMU", "PCMA"),
        retry_after_s=7,
    )


def test_an_allowed_offer_is_answered_with_its_codec() -> None:
    assert run(pts="8 0") == Decision(200, "OK", codec="PCMA")


def test_a_disallowed_source_is_403_before_anything_else() -> None:
    decision = run(source="192.0.2.9", active=5, body="garbage")
    assert (decision.status, decision.reason) == (403, "Forbidden (source 192.0.2.9 not allowed)")


def test_a_full_worker_is_503_with_retry_after() -> None:
    decision = run(active=2)
    assert (decision.status, decision.retry_after_s) == (503, 7)
    assert decision.reason.startswith("Service Unavailable")


def test_offer_problems_carry_their_status_and_reason() -> None:
    assert run(pts="3").status == 488
    assert run(pts="3").reason.startswith("Not Acceptable Here (no acceptable codec: offered GSM")
    assert run(body="x=1\r\n").status == 400
    assert run(body="x=1\r\n").reason.startswith("Bad Request (malformed SDP")


def test_an_invite_without_offer_is_answered_with_ours() -> None:
    assert run(body="").accepted


@pytest.mark.parametrize(
    ("source", "allowed"),
    [("127.0.0.1", True), ("10.1.2.3", False), ("[::1]", False), ("not-an-ip", False)],
)
def test_sources(source: str, allowed: bool) -> None:
    assert source_allowed(source, LOOPBACK) is allowed
    assert source_allowed("::1", (ipaddress.ip_network("::1/128"),))


@pytest.mark.parametrize(
    ("confirmed", "local", "status", "cause"),
    [
        (True, None, 200, "bye-remote"),
        (False, None, 487, "cancel"),
        (False, None, 408, "error"),
        (True, "bridge-stopping", 200, "bridge-stopping"),
    ],
)
def test_end_causes(confirmed: bool, local: str | None, status: int, cause: str) -> None:
    assert end_cause(confirmed=confirmed, hung_up_locally=local, status=status) == cause
