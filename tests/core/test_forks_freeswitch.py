"""FreeSWITCH stream URLs and metadata (bridge.core.forks.freeswitch)."""

from __future__ import annotations

import pytest

from bridge.core.forks.freeswitch import read_metadata, read_url
from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError


def test_defaults_are_mono_8k_on_the_caller() -> None:
    url = read_url({})
    assert (url.uuid, url.mix, url.rate_hz, url.roles) == (None, "mono", 8000, (LegRole.CALLER,))


def test_stereo_16k_is_two_roles_and_roles_can_be_named() -> None:
    url = read_url({"uuid": "abc", "mix": "stereo", "rate": "16k"})
    assert (url.uuid, url.rate_hz, url.roles) == ("abc", 16000, (LegRole.CALLER, LegRole.CALLEE))
    named = read_url({"mix": "stereo", "roles": "customer,agent"})
    assert named.roles == (LegRole.CUSTOMER, LegRole.AGENT)
    assert read_url({"mix": "mixed"}).roles == (LegRole.SPEAKER,)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"mix": "quad"}, "expected mono, mixed or stereo"),
        ({"rate": "²"}, "rate"),
        ({"rate": "9" * 40}, "rate"),
        ({"mix": "stereo", "roles": "agent"}, "name a role for each"),
        ({"roles": "boss"}, "unknown role"),
        ({"uuid": "x" * 200}, "uuid"),
        ({"uuid": "a\x00b"}, "uuid"),
    ],
)
def test_bad_urls_are_protocol_errors(query: dict[str, str], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        read_url(query)


def test_metadata_is_json_when_it_is_an_object_and_kept_as_text_otherwise() -> None:
    assert read_metadata('{"uuid": "u1", "caller": "+4930"}') == {"uuid": "u1", "caller": "+4930"}
    assert read_metadata("agent=alice") == {"text": "agent=alice"}
    assert read_metadata("[1, 2]") == {"text": "[1, 2]"}
    assert len(str(read_metadata("x" * 100_000)["text"])) == 16_384
