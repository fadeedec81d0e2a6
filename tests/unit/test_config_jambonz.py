"""jambonz settings of ``[ingest.websocket]``: Basic auth credentials and the off-loopback rule."""

from __future__ import annotations

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError

OFF_LOOPBACK = {"BRIDGE_FORKS_ENABLED": "true", "BRIDGE_FORKS_HOST": "0.0.0.0"}


def test_jambonz_credentials_come_from_the_environment() -> None:
    environ = {"BRIDGE_JAMBONZ_USERNAME": "jambonz", "BRIDGE_JAMBONZ_PASSWORD": "pw"}
    forks = load_config(None, environ).forks
    assert (forks.jambonz_username, forks.jambonz_password) == ("jambonz", "pw")
    assert {"jambonz", "jambonz-stt"} <= set(forks.protocols)


def test_basic_auth_alone_guards_only_the_listen_path_off_loopback() -> None:
    environ = OFF_LOOPBACK | {
        "BRIDGE_JAMBONZ_USERNAME": "jambonz",
        "BRIDGE_JAMBONZ_PASSWORD": "pw",
        "BRIDGE_FORKS_PROTOCOLS": "jambonz",
    }
    assert load_config(None, environ).forks.protocols == ("jambonz",)
    # /jambonz-stt authenticates with the shared secret only (Authorization: Bearer <apiKey>)
    with pytest.raises(ConfigError, match="BRIDGE_FORKS_SECRET"):
        load_config(None, environ | {"BRIDGE_FORKS_PROTOCOLS": "jambonz,jambonz-stt"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BRIDGE_JAMBONZ_USERNAME": "jambonz"}, "set both BRIDGE_JAMBONZ_USERNAME"),
        ({"BRIDGE_FORKS_PROTOCOLS": "jambonz"}, "serves /jambonz with no authentication"),
    ],
)
def test_incomplete_or_missing_jambonz_auth_is_a_problem(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, OFF_LOOPBACK | environ)
