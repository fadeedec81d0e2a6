"""SIP INFO ``application/dtmf-relay`` bodies, read by the worker itself (docs/pjsua2.md P15)."""

from __future__ import annotations

import pytest

from bridge.errors import RemoteProtocolError
from bridge.sip.dtmf import parse_dtmf_relay


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Signal=5\r\nDuration=160\r\n", ("5", 160)),  # Cisco's form, what sipp sends
        ("Signal=7", ("7", 0)),  # unterminated: pjsua's reader aborted on it
        ("Signal=*\nDuration=250", ("*", 250)),
        ("signal = d\r\nduration = 100\r\n", ("D", 100)),
        ("Signal=10\r\nDuration=90\r\n", ("*", 90)),  # RFC 4733 event numbers 10-15
        ("Signal=11", ("#", 0)),
    ],
)
def test_digits_and_durations_are_read(body: str, expected: tuple[str, int]) -> None:
    assert parse_dtmf_relay(body) == expected


@pytest.mark.parametrize(
    "body",
    ["", "Duration=160\r\n", "Signal=\r\n", "Signal=16", "Signal=55", "Signal=7\r\nDuration=-1"],
)
def test_a_body_without_a_digit_is_400(body: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_dtmf_relay(body)
    assert caught.value.status_hint == 400
