"""bridge.webrtc.trickle: PATCH bodies (RFC 8840 fragments) and preconditions, checked against the
real Chromium 156 offer; the fragments are shaped like Chromium's trickled candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.webrtc.offer import check_offer
from bridge.webrtc.trickle import (
    MAX_REMOTE_CANDIDATES,
    RemoteCandidate,
    TrickleRejected,
    check_if_match,
    read_fragment,
)

CHROME = (Path(__file__).parent / "chrome156_two_audio.sdp").read_text()
OFFER = check_offer(CHROME, max_tracks=2)  # ice-ufrag idGi, mids 0 and 1
LOOPBACK = "798350125 1 udp 2122194687 127.0.0.1 38632 typ host generation 0 ufrag idGi"
ETH0 = "2175288481 1 udp 2122063615 192.0.2.2 37842 typ host generation 0 ufrag idGi"
TCP = "1364867509 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active generation 0"
SRFLX = "842163049 1 udp 1686052607 203.0.113.7 61764 typ srflx raddr 192.0.2.2 rport 37842"


def fragment(*candidates: str, end: bool = False, ufrag: str = "idGi", mid: str = "0") -> str:
    lines = [
        f"a=ice-ufrag:{ufrag}",
        "a=ice-pwd:MIRWGiirxmhG9DeNx2acYH1T",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        f"a=mid:{mid}",
        *(f"a=candidate:{c}" for c in candidates),
    ]
    if end:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def rejected(body: str, **kwargs: bool) -> TrickleRejected:
    with pytest.raises(TrickleRejected) as info:
        read_fragment(body, OFFER, **kwargs)
    return info.value


def test_offer_keeps_ice_credentials_and_mids() -> None:
    assert (OFFER.ice.ufrag, OFFER.ice.pwd) == ("idGi", "MIRWGiirxmhG9DeNx2acYH1T")
    assert OFFER.mids == ("0", "1")


def test_candidates_go_to_their_mid_in_order() -> None:
    patch = read_fragment(fragment(LOOPBACK, ETH0, SRFLX), OFFER)
    assert patch.candidates == (
        RemoteCandidate("0", LOOPBACK),
        RemoteCandidate("0", ETH0),
        RemoteCandidate("0", SRFLX),
    )
    assert not patch.end_of_candidates and patch.discarded == 0


def test_end_of_candidates_alone_or_with_candidates_session_or_media_level() -> None:
    assert read_fragment(fragment(end=True), OFFER).end_of_candidates
    assert read_fragment(fragment(LOOPBACK, end=True), OFFER).candidates[0].candidate == LOOPBACK
    assert read_fragment("a=end-of-candidates\r\n", OFFER).end_of_candidates


def test_lf_only_and_no_credentials_are_fine() -> None:
    body = f"m=audio 9 UDP/TLS/RTP/SAVPF 0\na=mid:1\na=candidate:{LOOPBACK}\n"
    assert read_fragment(body, OFFER).candidates == (RemoteCandidate("1", LOOPBACK),)


def test_mid_after_the_candidates_still_names_the_section() -> None:
    body = f"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=candidate:{LOOPBACK}\r\na=mid:0\r\n"
    assert read_fragment(body, OFFER).candidates == (RemoteCandidate("0", LOOPBACK),)


def test_unsupported_transport_rtcp_and_other_generation_are_discarded_silently() -> None:
    rtcp = LOOPBACK.replace(" 1 udp ", " 2 udp ")
    old = LOOPBACK.replace("ufrag idGi", "ufrag OLD1")
    patch = read_fragment(fragment(TCP, rtcp, old, LOOPBACK), OFFER)
    assert patch.candidates == (RemoteCandidate("0", LOOPBACK),)
    assert patch.discarded == 3


def test_loopback_only_keeps_127_0_0_1() -> None:
    patch = read_fragment(fragment(ETH0, LOOPBACK, SRFLX), OFFER, loopback_only=True)
    assert [c.candidate for c in patch.candidates] == [LOOPBACK] and patch.discarded == 2


def test_candidates_beyond_the_room_are_discarded() -> None:
    many = [LOOPBACK.replace("38632", str(40000 + n)) for n in range(5)]
    patch = read_fragment(fragment(*many), OFFER, room=2)
    assert len(patch.candidates) == 2 and patch.discarded == 3
    assert MAX_REMOTE_CANDIDATES >= 16


def test_new_credentials_are_an_ice_restart_422() -> None:
    error = rejected(fragment(LOOPBACK, ufrag="NEW1"))
    assert error.status_hint == 422 and "ICE restart" in str(error) and "idGi" in str(error)
    body = fragment(LOOPBACK).replace("MIRWGiirxmhG9DeNx2acYH1T", "x" * 24)
    assert rejected(body).status_hint == 422


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("", "empty"),
        ("hello\r\n", "line 1"),
        (f"a=candidate:{LOOPBACK}\r\n", "before any m= line"),
        (f"m=audio 9\r\na=mid:0\r\na=candidate:{LOOPBACK}\r\n", "bad media line"),
        (f"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=candidate:{LOOPBACK}\r\n", "no a=mid"),
        (fragment(LOOPBACK, mid="7"), "mids: 0, 1"),
        (fragment("1 1 udp 2122194687 127.0.0.1 38632 host"), "typ"),
        (fragment("1 1 udp 2122194687 127.0.0.1 70000 typ host"), "port"),
        (fragment("1 x udp 2122194687 127.0.0.1 1 typ host"), "component"),
        (fragment("1 1 udp 99999999999 127.0.0.1 1 typ host"), "priority"),
        (fragment("f@o 1 udp 1 127.0.0.1 1 typ host"), "foundation"),
        (fragment("1 1 udp 1 203.0.113.7 1 typ srflx raddr 192.0.2.2 rport x"), "rport"),
        (
            fragment("1 1 udp 1 203.0.113.7 1 typ srflx raddr 192.0.2.2 rport " + "9" * 5000),
            "rport",
        ),
        (fragment("1 1 udp 1 203.0.113.7 1 typ srflx raddr 192.0.2.2 rport ٣"), "rport"),
        (fragment("1 1 udp 2122194687 127.0.0.1 ²² typ host"), "port"),
        ("a=end-of-candidates\r\n" * 2000, "larger than"),
    ],
)
def test_malformed_fragment_is_400_with_reason(body: str, words: str) -> None:
    error = rejected(body)
    assert error.status_hint == 400 and words in str(error)


def test_malformed_wins_over_restart() -> None:
    assert rejected(fragment("1 1 udp", ufrag="NEW1")).status_hint == 400


@pytest.mark.parametrize(
    "if_match", ['"abc"', "*", ' "abc" ', '"x", "abc"', 'W/"x", "abc"', '"abc","y"']
)
def test_if_match_that_selects_the_session(if_match: str) -> None:
    check_if_match(if_match, '"abc"')


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        (None, 428),
        ("", 428),
        ('"abd"', 412),
        ('W/"abc"', 412),  # RFC 9110 §13.1.1: strong comparison
        ('"x", "y"', 412),
        ("abc", 400),
        ('"abc" junk', 400),
    ],
)
def test_if_match_missing_428_stale_412_garbage_400(if_match: str | None, status: int) -> None:
    with pytest.raises(TrickleRejected) as info:
        check_if_match(if_match, '"abc"')
    assert info.value.status_hint == status
