"""The Kamailio dispatcher's files, rendered from the SIP settings (bridge.sip.dispatcher).

Pure: no process is started here (tests/integration/test_sip_dispatcher.py runs Kamailio).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.sip import dispatcher
from bridge.sip.dispatcher import (
    options_request,
    render_dispatcher_list,
    render_kamailio_cfg,
    reply_status,
)
from sip_config import SipSettings


def settings(**changes: object) -> SipSettings:
    values: dict[str, object] = {"workers": 3, "port": 5080, "dispatcher_port": 5060}
    values.update(changes)
    return SipSettings(**values)  # type: ignore[arg-type]


def directives(cfg: str, name: str) -> list[str]:
    """The values of ``name=...`` lines (global parameters) of a rendered cfg."""
    return re.findall(rf"^{name}=(.*)$", cfg, re.M)


def test_every_worker_is_a_destination_with_its_own_call_load_id() -> None:
    text = render_dispatcher_list(settings())
    rows = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert rows == [
        ["1", "sip:127.0.0.1:5080", "0", "0", "duid=worker0"],
        ["1", "sip:127.0.0.1:5081", "0", "0", "duid=worker1"],
        ["1", "sip:127.0.0.1:5082", "0", "0", "duid=worker2"],
    ]


def test_workers_are_reached_over_tcp_only_when_they_have_no_udp() -> None:
    assert "sip:127.0.0.1:5080 " in render_dispatcher_list(settings(transports=("udp", "tcp")))
    tcp_only = render_dispatcher_list(settings(transports=("tcp",)))
    assert "sip:127.0.0.1:5080;transport=tcp " in tcp_only


def test_the_cfg_listens_on_host_and_dispatcher_port_for_each_transport() -> None:
    cfg = render_kamailio_cfg(settings(transports=("udp", "tcp")), list_path="/run/x/ds.list")
    assert directives(cfg, "listen") == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert directives(cfg, "disable_tcp") == []
    assert 'modparam("dispatcher", "list_file", "/run/x/ds.list")' in cfg
    assert not re.search(r"@[A-Z_]+@", cfg)  # every placeholder filled
    udp_only = render_kamailio_cfg(settings())
    assert directives(udp_only, "listen") == ["udp:127.0.0.1:5060"]
    assert directives(udp_only, "disable_tcp") == ["yes"]


def test_the_public_address_is_advertised_for_nat() -> None:
    cfg = render_kamailio_cfg(settings(host="10.0.0.5", public_address="203.0.113.7"))
    assert directives(cfg, "listen") == ["udp:10.0.0.5:5060 advertise 203.0.113.7:5060"]


def test_ipv6_addresses_go_in_brackets() -> None:
    s = settings(host="::1", allowed_sources=(ipaddress.ip_network("::1/128"),))
    cfg = render_kamailio_cfg(s)
    assert directives(cfg, "listen") == ["udp:[::1]:5060"]
    assert 'is_in_subnet("$si", "::1/128")' in cfg
    assert "sip:[::1]:5081 " in render_dispatcher_list(s)


def test_allowed_sources_are_checked_by_the_dispatcher() -> None:
    nets = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    cfg = render_kamailio_cfg(settings(allowed_sources=nets))
    assert 'is_in_subnet("$si", "10.0.0.0/8,192.0.2.7/32")' in cfg
    assert 'sl_send_reply("403", "Forbidden (source $si not allowed)")' in cfg


def test_full_workers_end_as_503_with_the_configured_retry_after() -> None:
    cfg = render_kamailio_cfg(settings(retry_after_s=9))
    assert 'append_to_reply("Retry-After: 9\\r\\n");' in cfg
    assert 't_check_status("^(486|503|408)$")' in cfg  # the refusals that fail over
    assert 't_reply("503", "Service Unavailable (all call slots busy)")' in cfg
    assert 'append_to_reply("Retry-After' not in render_kamailio_cfg(settings(retry_after_s=0))


def test_in_dialog_requests_are_record_routed_and_keepalives_probe_the_workers() -> None:
    cfg = render_kamailio_cfg(settings())
    assert "record_route();" in cfg and "loose_route()" in cfg
    assert 'ds_select_dst("1", "10")' in cfg  # call load: the least loaded worker first
    for param, value in (
        ("ds_ping_interval", "2"),
        ("ds_probing_mode", "1"),
        ("ds_hash_size", "8"),
        ("flags", "2"),
    ):
        assert f'modparam("dispatcher", "{param}", {value})' in cfg
    assert 'mf_process_maxfwd_header("10")' in cfg and "sanity_check()" in cfg


def test_the_list_path_must_fit_in_the_cfg() -> None:
    with pytest.raises(ValueError, match="no quotes or newlines"):
        render_kamailio_cfg(settings(), list_path='/tmp/a"b')


def test_template_and_renderer_agree_on_placeholders() -> None:
    with pytest.raises(ValueError, match="unknown placeholder @NOPE@"):
        render_kamailio_cfg(settings(), template="@NOPE@")
    with pytest.raises(ValueError, match="placeholders never used"):
        render_kamailio_cfg(settings(), template="#!KAMAILIO\n@LISTEN@\n")


def test_the_probe_is_an_options_request_and_only_its_reply_counts() -> None:
    request = options_request(("127.0.0.1", 5060), ("127.0.0.1", 40000), "abc123@probe")
    text = request.decode()
    assert text.startswith("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n")
    assert "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK" in text
    assert "Call-ID: abc123@probe\r\n" in text and text.endswith("\r\n\r\n")
    reply = b"SIP/2.0 403 Forbidden\r\nVia: x\r\ni: abc123@probe\r\nContent-Length: 0\r\n\r\n"
    assert reply_status(reply, "abc123@probe") == 403  # any answer: it listens
    assert reply_status(reply, "other@probe") is None
    assert (
        reply_status(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: abc123@probe\r\n\r\n", "abc123@probe")
        is None
    )
    assert reply_status(b"\x00garbage", "abc123@probe") is None


def test_a_missing_kamailio_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(dispatcher, "KAMAILIO_PATHS", ())
    with pytest.raises(ConfigError, match="apt-get install kamailio") as info:
        dispatcher.find_kamailio()
    assert 'dispatcher = "off"' in str(info.value)


def test_the_template_ships_with_sip_config() -> None:
    template = Path(dispatcher.__file__).parents[2] / "sip_config" / "kamailio.cfg.tmpl"
    assert template.read_text().startswith("#!KAMAILIO")
