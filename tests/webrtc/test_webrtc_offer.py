"""bridge.webrtc.offer with a real Chromium 156 offer (two sendonly audio tracks, loopback run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.webrtc.offer import (
    OfferRejected,
    advertise_public_address,
    check_offer,
    keep_candidates,
)

CHROME = (Path(__file__).parent / "chrome156_two_audio.sdp").read_text()


def rejected(sdp: str, max_tracks: int = 2) -> OfferRejected:
    with pytest.raises(OfferRejected) as info:
        check_offer(sdp, max_tracks=max_tracks)
    return info.value


def test_chrome_offer_has_two_opus_tracks_in_order() -> None:
    offer = check_offer(CHROME, max_tracks=2)
    assert [t.mid for t in offer.tracks] == ["0", "1"]
    assert all(t.direction == "sendonly" for t in offer.tracks)
    assert all(t.usable_codec == "opus/48000/2" for t in offer.tracks)
    assert "g722/8000" in offer.tracks[0].codecs


def test_crlf_and_lf_parse_alike() -> None:
    assert check_offer(CHROME.replace("\n", "\r\n"), max_tracks=2) == check_offer(
        CHROME, max_tracks=2
    )


@pytest.mark.parametrize(
    ("sdp", "words"),
    [
        ("", "v=0"),
        ("hello", "v=0"),
        ("v=0\nthis is not sdp\n", "line 2"),
        ("v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nt=0 0\n", "no media"),
        ("v=0\nm=audio\n", "bad media line"),
    ],
)
def test_malformed_is_400_with_reason(sdp: str, words: str) -> None:
    error = rejected(sdp)
    assert error.status_hint == 400 and words in str(error)


def test_missing_fingerprint_is_400() -> None:
    sdp = "\n".join(line for line in CHROME.splitlines() if not line.startswith("a=fingerprint"))
    assert "fingerprint" in str(rejected(sdp))


def test_bad_rtpmap_is_400() -> None:
    error = rejected(CHROME.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus"))
    assert error.status_hint == 400 and "rtpmap" in str(error)


def test_no_usable_codec_is_406_naming_offered_and_accepted() -> None:
    sdp = "\n".join(
        line for line in CHROME.splitlines() if not line.startswith("a=rtpmap:") or "G722" in line
    ).replace(" 111 63 9 0 8 13 110 126", " 9")
    error = rejected(sdp)
    assert error.status_hint == 406
    assert "g722/8000" in str(error) and "opus/48000" in str(error)


def test_static_pcmu_without_rtpmap_is_usable() -> None:
    sdp = "\n".join(line for line in CHROME.splitlines() if not line.startswith("a=rtpmap:"))
    sdp = sdp.replace(" 111 63 9 0 8 13 110 126", " 0")
    assert check_offer(sdp, max_tracks=2).tracks[0].usable_codec == "pcmu/8000"


def test_recvonly_and_inactive_sections_are_not_tracks() -> None:
    first, second = CHROME.split("m=audio 40750")
    sdp = first + "m=audio 40750" + second.replace("a=sendonly", "a=inactive")
    assert len(check_offer(sdp, max_tracks=2).tracks) == 1
    assert rejected(CHROME.replace("a=sendonly", "a=recvonly")).status_hint == 406


def test_too_many_tracks_is_406() -> None:
    error = rejected(CHROME, max_tracks=1)
    assert error.status_hint == 406 and "at most 1" in str(error)


def test_video_is_406() -> None:
    sdp = CHROME + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
    assert "video" in str(rejected(sdp))


def test_keep_candidates_loopback_udp_only() -> None:
    kept = keep_candidates(CHROME, loopback_only=True)
    candidates = [line for line in kept.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(
        " udp " in c and (" 127.0.0.1 " in c or " ::1 " in c) for c in candidates
    )
    assert keep_candidates(CHROME, loopback_only=False) == CHROME


def test_offer_without_ice_credentials_is_400() -> None:
    sdp = "\n".join(line for line in CHROME.splitlines() if not line.startswith("a=ice-ufrag"))
    error = rejected(sdp)
    assert error.status_hint == 400 and "ice-ufrag" in str(error)


def test_session_level_ice_credentials_count() -> None:
    lines = [line for line in CHROME.splitlines() if not line.startswith("a=ice-")]
    sdp = "\n".join(
        [*lines[:4], "a=ice-ufrag:sess", "a=ice-pwd:sessionpasswordsessionpw", *lines[4:]]
    )
    assert check_offer(sdp, max_tracks=2).ice.ufrag == "sess"


def test_a_public_address_repeats_each_host_udp_candidate() -> None:
    answer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1a2b 1 udp 2130706431 10.0.0.7 50123 typ host\r\n"
        "a=candidate:3c4d 1 udp 1694498815 198.51.100.9 50123 typ srflx raddr 10.0.0.7 "
        "rport 50123\r\n"
        "a=candidate:5e6f 1 tcp 1518280447 10.0.0.7 9 typ host tcptype active\r\n"
        "a=end-of-candidates\r\n"
    )
    lines = advertise_public_address(answer, "203.0.113.5").split("\r\n")
    assert lines[2:4] == [
        "a=candidate:1a2b 1 udp 2130706431 10.0.0.7 50123 typ host",
        "a=candidate:1a2bn 1 udp 2130706430 203.0.113.5 50123 typ host",  # same port
    ]
    assert sum(line.count("203.0.113.5") for line in lines) == 1  # srflx, TCP: left alone
    assert lines[-2:] == ["a=end-of-candidates", ""]  # the trailing CRLF kept


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000²/2"),  # '²'.isdigit() is True
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/٤٨٠٠٠/2"),  # Arabic-Indic digits
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/" + "9" * 5000 + "/2"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:١١١ opus/48000/2"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:" + "1" * 5000 + " opus/48000/2"),
        ("m=audio 38632 ", "m=audio 38632² "),
        ("m=audio 38632 ", "m=audio ٣٨٦٣٢ "),
        ("m=audio 38632 ", "m=audio " + "9" * 5000 + " "),
        ("m=audio 38632 ", "m=audio 70000 "),
        ("m=audio 38632 ", "m=audio 38632/² "),
    ],
)
def test_non_ascii_or_huge_numbers_are_400(old: str, new: str) -> None:
    assert old in CHROME
    error = rejected(CHROME.replace(old, new, 1))
    assert error.status_hint == 400
    assert len(str(error)) < 300  # a 5,000-digit number is not echoed whole
