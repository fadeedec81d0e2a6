"""The one SDP reader: what every offer must be, whoever reads it next (SIP or WHIP)."""

from __future__ import annotations

import pytest

from bridge.core.sdp import SdpError, parse_sdp


def offer(connection: str = "c=IN IP4 192.0.2.10", *extra: str) -> str:
    return "\r\n".join(
        ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", connection, "t=0 0"]
        + ["m=audio 40000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", *extra, ""]
    )


@pytest.mark.parametrize(
    "connection",
    ["c=IN IP4 192.0.2.10", "c=IN IP6 2001:db8::1", "c=IN IP4 233.252.0.1/127", "c=IN IP4 0.0.0.0"],
)
def test_ip_addresses_are_read(connection: str) -> None:
    sdp = parse_sdp(offer(connection, "a=rtcp:40001 IN IP4 192.0.2.10"))
    assert sdp.connection and [f.encoding for f in sdp.media[0].formats] == [
        "PCMU",
        "TELEPHONE-EVENT",
    ]


@pytest.mark.parametrize(
    ("line", "status", "words"),
    [
        # pjlib asserts on a host of 254 bytes or more (docs/pjsua2.md P14).
        ("c=IN IP4 127.0.0.1" + "A" * 300, 488, "not an IP4 address"),
        ("c=IN IP4 pbx.example.com", 488, "not host names"),
        ("c=IN IP4 2001:db8::1", 400, "not an IP4 address"),
        ("c=IN IP6 192.0.2.10", 400, "not an IP6 address"),
        ("c=ATM NSAP 47.0005.80", 488, "expected IN IP4 or IN IP6"),
        ("c=IN IP4", 400, "expected c=IN IP4 <address>"),
        ("c=IN IP4 127.0\u00e2\u00ae.0.1", 488, "not an IP4 address"),
    ],
)
def test_a_connection_address_that_is_not_an_ip_literal_is_refused(
    line: str, status: int, words: str
) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(offer(line))
    assert caught.value.status_hint == status and words in str(caught.value)
    assert "line 4" in str(caught.value)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a=rtcp:40001 IN IP4 " + "9" * 300, "not an IP4 address"),
        ("a=rtcp:99999", "RTCP port"),
        ("a=rtcp:40001 IN IP4", "expected a=rtcp:<port> IN IP4 <address>"),
    ],
)
def test_an_rtcp_attribute_names_a_port_and_an_ip_address(line: str, words: str) -> None:
    with pytest.raises(SdpError, match=words):
        parse_sdp(offer("c=IN IP4 192.0.2.10", line))
