"""A raw SIP message read again (bridge.sip.message): pure."""

from __future__ import annotations

from bridge.sip.message import parse_message

INVITE = (
    "INVITE sip:tap-1001@bridge.example.com;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    "f: <sip:src@sbc>;tag=1\r\n"
    "Require: siprec,\r\n  100rel\r\n"
    "REQUIRE: timer\r\n"
    "X-Bridge-Target: <sip:agent@pbx>\r\n"
    "c: multipart/mixed;boundary=b\r\n"
    "\r\n"
    "--b\r\nbody\r\n"
)


def test_headers_compact_folded_and_repeated() -> None:
    message = parse_message(INVITE)
    assert message.header("From") == "<sip:src@sbc>;tag=1"  # compact f: (RFC 3261 §7.3.3)
    assert message.header("content-type") == "multipart/mixed;boundary=b"
    assert message.option_tags("require") == {"siprec", "100rel", "timer"}  # folded (§7.3.1)
    assert message.header("x-bridge-target") == "<sip:agent@pbx>"
    assert message.header("Contact") is None
    assert message.body == "--b\r\nbody\r\n"


def test_request_uri_and_user() -> None:
    message = parse_message(INVITE)
    assert message.request_uri == "sip:tap-1001@bridge.example.com;transport=udp"
    assert message.request_user == "tap-1001"
    response = parse_message("SIP/2.0 200 OK\nVia: x\n\n")
    assert (response.request_uri, response.request_user, response.body) == ("", "", "")
    assert parse_message("INVITE sip:bridge.example.com SIP/2.0\r\n\r\n").request_user == ""
