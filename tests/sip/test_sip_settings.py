"""SIP settings (sip_config) and the worker specs derived from them (bridge.sip.spec)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import sip_config
from bridge.core.types import LegRole
from bridge.errors import ConfigError
from bridge.sip.spec import WorkerSpec, worker_spec
from sip_config import SipSettings, load_sip_settings


def test_defaults_take_g711_and_g722_from_loopback_only() -> None:
    s = load_sip_settings(None, {})
    assert s == SipSettings()
    assert s.codecs == ("PCMU", "PCMA", "G722")
    assert s.allowed_sources == (ipaddress.ip_network("127.0.0.0/8"),)
    assert (s.max_calls_per_worker, s.direct_role) == (4, LegRole.CALLER)
    assert s.enabled  # `bridge serve` answers SIP from its first run, on loopback only


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[asr]\nurl = "ws://x/v1/realtime"\n'  # other tables belong to bridge.config
        '[sip]\nenabled = true\nport = 6000\nworkers = 3\ncodecs = ["pcma"]\n'
        'transports = ["udp", "tcp"]\n'
        'allowed_sources = ["10.0.0.0/8", "192.0.2.7"]\ndirect_role = "agent"\n'
    )
    s = load_sip_settings(path, {"BRIDGE_SIP_PORT": "7000", "BRIDGE_SIP_CODECS": "PCMU, G722"})
    assert (s.port, s.workers, s.codecs, s.transports) == (
        7000,
        3,
        ("PCMU", "G722"),
        ("udp", "tcp"),
    )
    assert s.allowed_sources[1] == ipaddress.ip_network("192.0.2.7/32")
    assert s.direct_role is LegRole.AGENT
    assert s.enabled
    assert not load_sip_settings(path, {"BRIDGE_SIP_ENABLED": "no"}).enabled
    assert [s.worker_port(k) for k in range(3)] == [7000, 7001, 7002]
    assert [s.worker_rtp_ports(k) for k in range(3)] == [(40000, 333), (40333, 333), (40666, 333)]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[sip]\nmax_calls_per_worker = 8\ncodecs = ["opus"]\nallowed_sources = ["nope"]\n'
        'portz = 1\ndirect_role = "boss"\ntransports = ["sctp"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_sip_settings(path, {"BRIDGE_SIP_WORKERS": "two", "BRIDGE_SIP_ENABLED": "maybe"})
    text = "\n".join(info.value.problems)
    for expected in (
        "BRIDGE_SIP_WORKERS='two': expected int",
        "BRIDGE_SIP_ENABLED='maybe': expected 1/0, true/false, yes/no",
        "sip.max_calls_per_worker: must be 1..4 (the pjsua2 wheel's compile-time cap",
        "codec 'OPUS' is not supported (use PCMU, PCMA, G722)",
        "'nope' is not an IP address or network",
        "unknown setting sip.portz",
        "unknown role 'boss'",
        "unknown transport 'sctp'",
    ):
        assert expected in text
    assert len(info.value.problems) == 8


def test_rtp_range_must_hold_every_call() -> None:
    with pytest.raises(ConfigError, match="need at least 20 \\(2 per call for pjsua, 2 for"):
        load_sip_settings(
            None,
            {
                "BRIDGE_SIP_RTP_PORT_MIN": "40000",
                "BRIDGE_SIP_RTP_PORT_MAX": "40039",
                "BRIDGE_SIP_WORKERS": "4",
            },
        )


def test_worker_spec_round_trips_and_picks_the_bridge_rate() -> None:
    settings = SipSettings(workers=2, codecs=("PCMU",), public_address="203.0.113.5")
    spec = worker_spec(settings, 1)
    assert WorkerSpec.from_json(spec.to_json()) == spec
    assert (spec.sip_port, spec.rtp_port, spec.rtp_port_range) == (5081, 40500, 500)
    assert spec.bridge_rate_hz == 8000  # G.711 only: the cheaper 8 kHz conference bridge
    assert worker_spec(SipSettings(), 0).bridge_rate_hz == 16000  # G.722 keeps its high band
    assert spec.networks() == (ipaddress.ip_network("127.0.0.0/8"),)


def test_agents_map_the_dialed_extension_then_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text('[sip.agents]\n"1001" = "alice"\n"sip:bob@pbx.example.com" = "bob"\n')
    sip = load_sip_settings(path, {})
    assert sip.agent_for("sip:+4930123@trunk", "<sip:1001@pbx;user=phone>") == "alice"
    assert sip.agent_for("sip:bob@pbx.example.com", "sip:+4930123@trunk") == "bob"
    assert sip.agent_for("sip:x@y", "sip:z@y") is None
    from_env = load_sip_settings(None, {"BRIDGE_SIP_AGENTS": "1001=alice, 1002=carol"})
    assert from_env.agents == (("1001", "alice"), ("1002", "carol"))
    with pytest.raises(ConfigError, match="'1003'='' is not extension=agent"):
        load_sip_settings(None, {"BRIDGE_SIP_AGENTS": "1003"})


def test_the_dispatcher_runs_in_front_of_several_workers(tmp_path: Path) -> None:
    assert SipSettings().dispatcher == "auto" and not SipSettings().dispatcher_active
    assert SipSettings(workers=2).dispatcher_active  # auto: one SIP address for several workers
    assert SipSettings(dispatcher="on").dispatcher_active
    assert not SipSettings(workers=4, dispatcher="off").dispatcher_active
    path = tmp_path / "b.toml"
    path.write_text('[sip]\nworkers = 4\ndispatcher = "on"\ndispatcher_port = 5070\n')
    s = load_sip_settings(path, {"BRIDGE_SIP_DISPATCHER_PORT": "5090"})
    assert (s.dispatcher, s.dispatcher_port, s.dispatcher_active) == ("on", 5090, True)
    assert load_sip_settings(path, {"BRIDGE_SIP_DISPATCHER": "OFF"}).dispatcher == "off"


def test_dispatcher_problems_name_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        load_sip_settings(
            None,
            {
                "BRIDGE_SIP_WORKERS": "4",
                "BRIDGE_SIP_DISPATCHER_PORT": "5082",  # worker 2's port
                "BRIDGE_SIP_HOST": "0.0.0.0",
            },
        )
    text = "\n".join(info.value.problems)
    assert "BRIDGE_SIP_DISPATCHER_PORT: 5082 is a worker's port (5080..5083)" in text
    assert "BRIDGE_SIP_HOST: the dispatcher (Kamailio) needs the concrete address" in text
    with pytest.raises(ConfigError, match="needs an IP address to listen on"):
        load_sip_settings(None, {"BRIDGE_SIP_WORKERS": "2", "BRIDGE_SIP_HOST": "sip.example"})
    with pytest.raises(ConfigError, match="unknown mode 'maybe' \\(use auto, on, off"):
        load_sip_settings(None, {"BRIDGE_SIP_DISPATCHER": "maybe"})
    with pytest.raises(ConfigError, match="DISPATCHER_PORT: must be 1..65535, got 0"):
        load_sip_settings(None, {"BRIDGE_SIP_DISPATCHER_PORT": "0"})
    # Without the dispatcher, a wildcard host and any port are the workers' business.
    s = load_sip_settings(
        None, {"BRIDGE_SIP_HOST": "0.0.0.0", "BRIDGE_SIP_DISPATCHER_PORT": "5080"}
    )
    assert not s.dispatcher_active


def test_workers_behind_the_dispatcher_accept_its_address() -> None:
    lan = (ipaddress.ip_network("192.0.2.0/24"),)
    direct = SipSettings(host="10.0.0.5", allowed_sources=lan)
    assert direct.worker_allowed_sources() == lan
    behind = SipSettings(host="10.0.0.5", allowed_sources=lan, workers=2)
    assert behind.worker_allowed_sources() == (*lan, ipaddress.ip_network("10.0.0.5/32"))
    assert SipSettings(workers=2).worker_allowed_sources() == SipSettings().allowed_sources


def test_routes_registration_and_rtp_timeout_reach_the_workers(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[sip]\nrtp_timeout_s = 12\nregistrar = "sip:pbx.example.com"\nauth_user = "1001"\n'
        '[sip.agents]\n"1001" = "alice"\n'
        '[[sip.routes]]\nuser = "tap-*"\nmode = "b2bua"\ntarget = "sip:{ext}@10.0.0.5"\n'
    )
    settings = load_sip_settings(path, {"BRIDGE_SIP_AUTH_PASSWORD": "s3cret"})
    assert settings.rtp_timeout_s == 12 and settings.auth_password == "s3cret"
    assert "s3cret" not in repr(settings)
    spec = WorkerSpec.from_json(worker_spec(settings, 0).to_json())
    assert "s3cret" not in worker_spec(settings, 0).to_json()  # never on a command line
    assert (spec.registrar, spec.auth_user, spec.rtp_timeout_s) == (
        "sip:pbx.example.com",
        "1001",
        12,
    )
    assert spec.agent_users == ("1001",)
    [route] = spec.route_table()
    assert route == settings.routes[0]
    assert route.b2bua_target(user="tap-1002", headers={}) == "sip:1002@10.0.0.5"


def test_route_and_registration_problems_name_where_they_are(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[sip]\nregistrar = "pbx.example.com"\n[[sip.routes]]\nmode = "b2bua"\n')
    with pytest.raises(ConfigError) as info:
        load_sip_settings(path, {"BRIDGE_SIP_RTP_TIMEOUT_S": "-1"})
    assert info.value.problems == [
        f"{path}: sip.routes[1]: mode b2bua needs target or target_header (where to dial)",
        f"{path}: sip.registrar: 'pbx.example.com' is not a sip: URI (sip:pbx.example.com)",
        "sip.auth_user: needed with a registrar (the extension)",
        "BRIDGE_SIP_RTP_TIMEOUT_S: must be >= 0 (0: never), got -1",
    ]


def test_tls_needs_its_files_one_worker_and_its_own_ports(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {
        "BRIDGE_SIP_TRANSPORTS": "udp,tls",
        "BRIDGE_SIP_TLS_CERT_FILE": str(cert),
        "BRIDGE_SIP_TLS_KEY_FILE": str(cert),
        "BRIDGE_SIP_TLS_PORT": "5071",
    }
    settings = load_sip_settings(None, environ)
    assert settings.transports == ("udp", "tls")
    assert worker_spec(settings, 0).tls_port == 5071
    with pytest.raises(ConfigError) as info:
        load_sip_settings(
            None,
            {
                **environ,
                "BRIDGE_SIP_TLS_KEY_FILE": str(tmp_path / "missing.pem"),
                "BRIDGE_SIP_TLS_PORT": "5081",
                "BRIDGE_SIP_WORKERS": "2",
            },
        )
    assert info.value.problems == [
        f"BRIDGE_SIP_TLS_KEY_FILE: '{tmp_path / 'missing.pem'}' is not a readable file",
        "BRIDGE_SIP_TRANSPORTS: tls is served by the workers themselves; with several workers "
        "Kamailio is in front and the bridge does not configure its tls module (use one worker, "
        "dispatcher = 'off', or terminate TLS at your SBC)",
        "BRIDGE_SIP_TLS_PORT: 5081..5082 overlaps the workers' UDP/TCP ports 5080..5081",
    ]


def test_the_package_says_the_workers_register_with_a_pbx() -> None:
    """Registration is built (tests/integration/test_sip_modes.py registers with sipp): the
    package's description says so, and names the settings that turn it on."""
    doc = sip_config.__doc__ or ""
    assert "not built" not in doc
    assert all(word in doc for word in ("registrar", "auth_user", "REGISTER"))
