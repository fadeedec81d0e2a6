"""Twilio settings of ``[ingest.websocket]``: auth token, public URL, the off-loopback rule."""

from __future__ import annotations

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError

OFF_LOOPBACK = {"BRIDGE_FORKS_ENABLED": "true", "BRIDGE_FORKS_HOST": "0.0.0.0"}


def test_the_token_and_public_url_come_from_the_environment() -> None:
    environ = {
        "BRIDGE_TWILIO_AUTH_TOKEN": "tok",
        "BRIDGE_FORKS_PUBLIC_URL": "wss://bridge.example.com/",
    }
    forks = load_config(None, environ).forks
    assert (forks.twilio_auth_token, forks.public_url) == ("tok", "wss://bridge.example.com")
    assert "twilio" in forks.protocols


def test_the_auth_token_alone_guards_only_the_twilio_path_off_loopback() -> None:
    environ = OFF_LOOPBACK | {"BRIDGE_TWILIO_AUTH_TOKEN": "tok", "BRIDGE_FORKS_PROTOCOLS": "twilio"}
    assert load_config(None, environ).forks.protocols == ("twilio",)
    with pytest.raises(ConfigError, match="BRIDGE_FORKS_SECRET"):
        load_config(None, OFF_LOOPBACK | {"BRIDGE_FORKS_PROTOCOLS": "twilio"})
    with pytest.raises(ConfigError, match="BRIDGE_FORKS_SECRET"):
        load_config(None, environ | {"BRIDGE_FORKS_PROTOCOLS": "twilio,freeswitch"})


@pytest.mark.parametrize("url", ["https://bridge.example.com", "wss://b.example.com/x?token=1"])
def test_a_public_url_that_is_no_websocket_base_is_a_problem(url: str) -> None:
    with pytest.raises(ConfigError, match="not a ws:// or wss:// URL"):
        load_config(None, {"BRIDGE_FORKS_PUBLIC_URL": url})
