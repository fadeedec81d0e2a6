"""parse_uint: ASCII digits only, bounded length and value."""

from __future__ import annotations

import pytest

from bridge.core.numbers import BadNumber, parse_uint
from bridge.errors import RemoteProtocolError


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("7", 7), ("0042", 42), ("4294967295", 2**32 - 1)]
)
def test_ascii_digits(text: str, value: int) -> None:
    assert parse_uint(text, what="n") == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "²",
        "1²",
        "٣",  # Arabic-Indic three: int() takes it
        "３",  # fullwidth
        "-1",
        "+1",
        " 1",
        "1 ",
        "1_000",
        "1.0",
        "0x10",
        "1\n",
        "\x00",
        "9" * 11,
        "9" * 5000,
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(BadNumber) as caught:
        parse_uint(text, what="query since")
    message = str(caught.value)
    assert message.startswith("query since: ")
    assert len(message) < 160  # a 5,000-digit input is not echoed whole
    assert caught.value.status_hint == 400
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, RemoteProtocolError)


def test_bounds() -> None:
    assert parse_uint("65535", what="port", max_digits=5, maximum=65535) == 65535
    with pytest.raises(BadNumber, match="out of range 0..65535"):
        parse_uint("65536", what="port", max_digits=5, maximum=65535)
    with pytest.raises(BadNumber, match="out of range 1.."):
        parse_uint("0", what="limit", minimum=1)
    assert parse_uint("9" * 20, what="n", max_digits=20) == 10**20 - 1
