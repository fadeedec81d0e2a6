"""SDP offers and the codec decision (bridge.sip.offer): pure."""

from __future__ import annotations

import pytest

from bridge.errors import RemoteProtocolError
from bridge.sip.offer import PayloadFormat, choose_codec, parse_sdp, receive_on, sdp_body

OFFER = """v=0\r
o=caller 1 1 IN IP4 192.0.2.1\r
s=-\r
c=IN IP4 192.0.2.1\r
t=0 0\r
m=audio 20000 RTP/AVP 3 8 0 9 101\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-16\r
m=video 0 RTP/AVP 96\r
"""


def test_static_and_mapped_payloads_are_named() -> None:
    offer = parse_sdp(OFFER)
    [audio] = offer.audio  # the video m-line is refused (port 0)
    assert audio.port == 20000
    assert [f.encoding for f in audio.formats] == ["GSM", "PCMA", "PCMU", "G722", "TELEPHONE-EVENT"]
    # RFC 3551 §4.5.2: G.722's RTP clock is 8000.
    assert audio.formats[3] == PayloadFormat(9, "G722", 8000)


def test_the_offerers_order_picks_among_allowed_codecs() -> None:
    assert choose_codec(parse_sdp(OFFER), ("PCMU", "PCMA")) == "PCMA"
    assert choose_codec(parse_sdp(OFFER), ("G722",)) == "G722"


def test_nothing_acceptable_is_488_naming_both_sides() -> None:
    offer = parse_sdp(OFFER.replace("3 8 0 9 101", "3 101"))
    with pytest.raises(RemoteProtocolError, match="offered GSM; the bridge takes PCMU") as info:
        choose_codec(offer, ("PCMU",))
    assert info.value.status_hint == 488


def test_an_offer_without_audio_is_488() -> None:
    with pytest.raises(RemoteProtocolError, match="no audio") as info:
        choose_codec(parse_sdp(OFFER.replace("m=audio 20000", "m=audio 0")), ("PCMU",))
    assert info.value.status_hint == 488


@pytest.mark.parametrize(
    ("sdp", "what"),
    [
        ("", "must start with v=0"),
        ("hello", "must start with v=0"),
        ("v=0\r\nthis is not sdp\r\n", "line 2 'this is not sdp' is not <type>=<value>"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m= line"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "expected m=<media> <port>"),
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\n", "no c= line"),
        ("v=0\r\nc=IN\r\nm=audio 1 RTP/AVP 0\r\n", "expected c=IN IP4"),
        ("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU\r\n", "rtpmap:<pt>"),
    ],
)
def test_malformed_sdp_is_400_naming_what_is_wrong(sdp: str, what: str) -> None:
    with pytest.raises(RemoteProtocolError, match=what) as info:
        parse_sdp(sdp)
    assert info.value.status_hint == 400


def test_the_body_of_an_invite() -> None:
    head = "INVITE sip:b@h SIP/2.0\r\nCall-ID: x\r\n"
    assert sdp_body(head + "Content-Type: application/sdp\r\n\r\n" + OFFER) == OFFER
    assert sdp_body(head + "c: application/sdp;charset=x\r\n\r\nv=0\r\n") == "v=0\r\n"
    assert sdp_body(head + "Content-Length: 0\r\n\r\n") is None
    with pytest.raises(RemoteProtocolError, match="expected application/sdp") as info:
        sdp_body(head + "Content-Type: text/plain\r\n\r\nhello")
    assert info.value.status_hint == 415


PJSUA_ANSWER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=pjmedia\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtcp:4001 IN IP4 127.0.0.1\r\n"
    "a=sendrecv\r\na=rtpmap:0 PCMU/8000\r\n"
    "m=audio 4002 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\n"
    "m=audio 0 RTP/AVP 0\r\n"
    "m=audio 4006 RTP/AVP 0\r\n"
)


def test_receive_on_moves_the_named_streams_and_their_rtcp() -> None:
    moved = receive_on(PJSUA_ANSWER, {0: 50000, 1: 50002, 2: 50004}, recvonly=True)
    media = parse_sdp(moved).media
    assert [m.port for m in media] == [50000, 50002, 0, 4006]  # a refused stream stays refused
    assert "a=rtcp:50001 IN IP4 127.0.0.1" in moved  # RFC 3605, the next odd port
    # RFC 3264 §6.1: sendrecv narrowed to recvonly; a sendonly answer keeps its direction.
    assert [m.direction for m in media[:2]] == ["recvonly", "sendonly"]
    assert moved.endswith("\r\n") and "\r\n\r\n" not in moved


def test_receive_on_adds_recvonly_where_no_direction_was_given() -> None:
    moved = receive_on(PJSUA_ANSWER, {3: 50006}, recvonly=True)
    media = parse_sdp(moved).media
    assert (media[3].port, media[3].direction) == (50006, "recvonly")
    assert (media[0].port, media[0].direction) == (4000, "sendrecv")  # not ours: untouched
    assert parse_sdp(receive_on(PJSUA_ANSWER, {0: 50000})).media[0].direction == "sendrecv"
