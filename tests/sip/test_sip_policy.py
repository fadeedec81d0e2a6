"""Admission and end causes (bridge.sip.policy): pure."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.sip.message import parse_message
from bridge.sip.policy import (
    AcceptRate,
    Decision,
    decide,
    end_cause,
    source_allowed,
    unreadable_answer,
)

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
    decision = run(pts="8 0")
    assert (decision.status, decision.reason, decision.codec) == (200, "OK", "PCMA")
    assert decision.offer is not None  # the worker finds the stream to receive in it
    assert [(m.kind, m.port) for m in decision.offer.media] == [("audio", 4000)]


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
    ("side", "mode", "confirmed", "local", "status", "cause"),
    [
        ("caller", "direct", True, None, 200, "bye-remote"),
        ("caller", "siprec", True, None, 200, "bye-remote"),
        ("caller", "direct", False, None, 487, "cancel"),
        ("caller", "direct", False, None, 408, "error"),
        ("caller", "direct", True, "bridge-stopping", 200, "bridge-stopping"),
        ("caller", "direct", True, "rtp-timeout", 408, "rtp-timeout"),
        ("caller", "b2bua", True, None, 200, "bye-caller"),
        ("caller", "b2bua", False, None, 487, "cancel"),
        ("agent", "b2bua", True, None, 200, "bye-agent"),
        ("agent", "b2bua", False, None, 486, "target-486"),
        ("agent", "b2bua", False, None, 408, "target-408"),
    ],
)
def test_end_causes(
    side: str, mode: str, confirmed: bool, local: str | None, status: int, cause: str
) -> None:
    assert (
        end_cause(side=side, mode=mode, confirmed=confirmed, status=status, local_cause=local)
        == cause
    )


def test_no_asr_capacity_is_503_with_retry_after() -> None:
    decision = decide(
        source_ip="127.0.0.1",
        whole_msg=INVITE + SDP.format(pts="0"),
        active_calls=0,
        max_calls=2,
        allowed_sources=LOOPBACK,
        codecs=("PCMU",),
        retry_after_s=7,
        asr_full=True,
    )
    assert decision == Decision(
        503, "Service Unavailable (transcription capacity full)", retry_after_s=7
    )


def test_a_b2bua_call_needs_two_free_slots() -> None:
    decision = decide(
        source_ip="127.0.0.1",
        whole_msg=INVITE + SDP.format(pts="0"),
        active_calls=1,
        max_calls=2,
        allowed_sources=LOOPBACK,
        codecs=("PCMU",),
        retry_after_s=7,
        slots_needed=2,
    )
    assert (decision.status, decision.retry_after_s) == (503, 7)


def test_at_most_eight_calls_are_taken_in_any_second() -> None:
    rate = AcceptRate(8)
    assert [rate.take(10.0 + i * 0.01) for i in range(10)] == [True] * 8 + [False] * 2
    # Refused attempts do not count: the window frees as the first call's second passes.
    assert not rate.take(10.999)
    assert rate.take(11.0)
    assert not rate.take(11.005)
    assert rate.take(11.011)
    # A steady 8 calls a second is never refused.
    steady = AcceptRate(8)
    assert all(steady.take(100.0 + i * 0.125) for i in range(80))


ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)


def message(start: str, addr: str, content_type: str = "application/sdp") -> str:
    body = ANSWER.format(addr=addr)
    return f"{start}\r\nCall-ID: a@b\r\nContent-Type: {content_type}\r\n\r\n{body}"


@pytest.mark.parametrize("start", ["ACK sip:bridge@192.0.2.2 SIP/2.0", "SIP/2.0 200 OK"])
def test_an_answer_pjmedia_would_abort_on_is_named(start: str) -> None:
    assert unreadable_answer(parse_message(message(start, "192.0.2.1"))) is None
    problem = unreadable_answer(parse_message(message(start, "192.0.2.1" + "A" * 300)))
    assert problem is not None and "not an IP4 address" in problem


def test_offers_and_bodies_without_sdp_are_left_to_pjsua() -> None:
    # An offer (re-INVITE, UPDATE, PRACK) is read in onCallRxOffer and answered 488 there.
    for start in ("INVITE sip:b@h SIP/2.0", "UPDATE sip:b@h SIP/2.0", "PRACK sip:b@h SIP/2.0"):
        assert unreadable_answer(parse_message(message(start, "x" * 300))) is None
    info = message("SIP/2.0 200 OK", "x" * 300, content_type="application/dtmf-relay")
    assert unreadable_answer(parse_message(info)) is None
