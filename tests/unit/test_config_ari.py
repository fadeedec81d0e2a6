"""``[asterisk]``: the ARI controller's settings and the problems a PBX admin can make."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.config.ingest import allowed
from bridge.errors import ConfigError

ARI = {"BRIDGE_ARI_URL": "http://10.0.0.2:8088/", "BRIDGE_ARI_PASSWORD": "pw"}


def test_off_by_default_and_on_with_a_url_and_password() -> None:
    assert not load_config(None, {}).ari.enabled
    ari = load_config(None, ARI).ari
    assert ari.enabled
    assert (ari.ari_url, ari.user, ari.password, ari.app) == (
        "http://10.0.0.2:8088",
        "bridge",
        "pw",
        "bridge",
    )
    assert (ari.format, ari.rtp_host, ari.rtp_advertise, ari.rtp_sources) == (
        "slin16",
        "127.0.0.1",
        "127.0.0.1",
        (),
    )


def test_the_file_sets_everything_but_the_password(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        "[asterisk]\n"
        'ari_url = "https://pbx.example.com:8089"\n'
        'ari_user = "transcriber"\n'
        'app = "tap"\n'
        'format = "ulaw"\n'
        'rtp_host = "0.0.0.0"\n'
        'rtp_advertise = "10.0.0.5"\n'
        'rtp_sources = ["10.0.0.2", "10.1.0.0/16"]\n'
    )
    ari = load_config(path, {"BRIDGE_ARI_PASSWORD": "pw"}).ari
    assert (ari.user, ari.app, ari.format, ari.rtp_host, ari.rtp_advertise) == (
        "transcriber",
        "tap",
        "ulaw",
        "0.0.0.0",
        "10.0.0.5",
    )
    assert allowed("10.1.2.3", ari.rtp_sources) and not allowed("10.2.0.1", ari.rtp_sources)
    assert ari.rtp_sources[0] == ipaddress.ip_network("10.0.0.2/32")


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"BRIDGE_ARI_URL": "http://10.0.0.2:8088"}, "BRIDGE_ARI_PASSWORD"),
        (ARI | {"BRIDGE_ARI_URL": "ws://10.0.0.2:8088"}, "not an http:// or https:// URL"),
        (ARI | {"BRIDGE_ARI_FORMAT": "opus"}, "'opus', expected one of ulaw, alaw, slin"),
        (ARI | {"BRIDGE_ARI_RTP_HOST": "0.0.0.0"}, "set rtp_advertise"),
        (ARI | {"BRIDGE_ARI_RTP_SOURCES": "10.0.0.300"}, "not an IP address or network"),
    ],
)
def test_each_mistake_is_named(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(None, environ)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.0.0.2", True), ("::ffff:10.0.0.2", True), ("fe80::1%eth0", False), ("x", False)],
)
def test_allowed_reads_every_form_of_address(address: str, expected: bool) -> None:
    nets = (ipaddress.ip_network("10.0.0.2"), ipaddress.ip_network("fe80::2/128"))
    assert allowed(address, nets) is expected
