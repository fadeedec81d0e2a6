"""Configuration: file, environment and options, every problem at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import DEFAULT_MODEL, load_config
from bridge.errors import ConfigError


def test_defaults_without_file_or_environment() -> None:
    config = load_config(None, {"HOME": "/home/a"})
    assert config.asr.url is None and config.asr.model == DEFAULT_MODEL
    # No delay set: the model directory's when one is given, else 480 (app.pool_from).
    assert config.asr.delay_ms is None and config.asr.model_dir is None
    assert config.asr.recycle_after_s == 120.0
    assert config.db_path == Path("/home/a/.local/share/call-bridge/transcripts.db")
    assert config.source == "defaults"


def test_file_then_environment_then_options(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[asr]\nurl = "ws://a:1/v1/realtime"\nmodel = "m1"\ndelay_ms = 960\n'
        'recycle_after_s = 120\n[storage]\ndb = "~/x.db"\n[serve]\nport = 9000\n'
    )
    environ = {"HOME": "/h", "BRIDGE_ASR_MODEL": "m2", "BRIDGE_ASR_API_KEY": "k"}
    config = load_config(path, environ, {("asr", "delay_ms"): 240, ("asr", "url"): None})
    assert config.asr.url == "ws://a:1/v1/realtime"  # None options do not override
    assert config.asr.model == "m2" and config.asr.api_key == "k"
    assert config.asr.delay_ms == 240 and config.asr.recycle_after_s == 120.0
    assert config.serve.port == 9000
    assert config.db_path == Path("~/x.db").expanduser()
    assert config.source == f"{path}, environment"


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text('[asr]\nurl = "wss://x/v1/realtime"\n')
    assert load_config(None, {"BRIDGE_CONFIG": str(path)}).asr.url == "wss://x/v1/realtime"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[asr]\nurl = "http://x"\ndelay_ms = 500\nmodle = "m"\nmax_buffer_s = -1\n'
        "[storage]\ndb = 3\n[nope]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"BRIDGE_PORT": "eighty"})
    assert info.value.problems == [
        f"{path}: unknown setting asr.modle (known: api_key, backends, delay_ms, dialect, "
        "g711_passthrough, language, max_buffer_s, max_legs, max_step_lag_ms, model, model_dir, "
        "prompt, recycle_after_s, rut_after_s, stall_timeout_s, url)",
        f"{path}: unknown setting nope.x (unknown section)",
        "BRIDGE_PORT='eighty': expected int",
        "ASR url 'http://x': expected ws://host:port/v1/realtime (or wss://)",
        "ASR delay_ms 500: must be a multiple of 80 in 80..1200, or 2400",
        "ASR max_buffer_s must be > 0, got -1.0",
        f"{path}: storage.db: expected str, got 3",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[asr\n", "not valid TOML"),
        ("asr = 1\n", r"\[asr\] must be a table"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml", {})


def test_webrtc_ice_servers_from_the_environment() -> None:
    config = load_config(
        None,
        {
            "BRIDGE_WEBRTC_STUN": "stun:stun.example.com:3478, stun:stun2.example.com",
            "BRIDGE_WEBRTC_TURN": "turn:turn.example.com:3478?transport=udp",
            "BRIDGE_WEBRTC_TURN_USERNAME": "bridge",
            "BRIDGE_WEBRTC_TURN_PASSWORD": "s3cret",
        },
    )
    assert config.webrtc.stun_urls == ("stun:stun.example.com:3478", "stun:stun2.example.com")
    assert config.webrtc.turn_password == "s3cret"
    with pytest.raises(ConfigError) as info:
        load_config(
            None, {"BRIDGE_WEBRTC_STUN": "stun.example.com", "BRIDGE_WEBRTC_TURN": "turn:x"}
        )
    assert info.value.problems == [
        "webrtc stun 'stun.example.com': expected stun: or stuns:host:port",
        "webrtc turn is set but no turn_username/BRIDGE_WEBRTC_TURN_PASSWORD: TURN servers need "
        "credentials",
    ]


def test_asr_capacity_from_the_environment() -> None:
    assert load_config(None, {"HOME": "/h"}).asr.max_legs == 0  # no limit known
    assert load_config(None, {"HOME": "/h", "BRIDGE_ASR_MAX_LEGS": "24"}).asr.max_legs == 24
    with pytest.raises(ConfigError, match="ASR max_legs must be >= 0"):
        load_config(None, {"HOME": "/h", "BRIDGE_ASR_MAX_LEGS": "-1"})


def test_webrtc_public_address_must_be_an_ip() -> None:
    environ = {"HOME": "/h", "BRIDGE_WEBRTC_PUBLIC_ADDRESS": "203.0.113.5"}
    assert load_config(None, environ).webrtc.public_address == "203.0.113.5"
    with pytest.raises(ConfigError, match="expected an IP address"):
        load_config(None, {"HOME": "/h", "BRIDGE_WEBRTC_PUBLIC_ADDRESS": "bridge.example.com"})


def test_settings_load_no_web_stack() -> None:
    """Config sits below HTTP: reading settings (tokens included) loads no bridge.http, no
    Starlette (issue 14: the arrow from bridge.config to bridge.http.auth ran back up)."""
    code = (
        "import sys, bridge.config, sip_config; "
        "print(sorted(m for m in sys.modules if m.startswith(('bridge.http', 'starlette'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_guard_settings() -> None:
    assert load_config(None, {"HOME": "/h"}).asr.rut_after_s == 8.0
    assert load_config(None, {"HOME": "/h", "BRIDGE_ASR_RUT_AFTER_S": "0"}).asr.rut_after_s == 0
    with pytest.raises(ConfigError) as info:
        load_config(None, {"HOME": "/h", "BRIDGE_ASR_RUT_AFTER_S": "-1"})
    assert info.value.problems == ["ASR rut_after_s must be >= 0 (0: off), got -1.0"]
    assert load_config(None, {"HOME": "/h"}).asr.max_step_lag_ms == 3000.0
    with pytest.raises(ConfigError) as info:
        load_config(None, {"HOME": "/h", "BRIDGE_ASR_MAX_STEP_LAG_MS": "-5"})
    assert info.value.problems == ["ASR max_step_lag_ms must be >= 0 (0: off), got -5.0"]


def test_the_guards_apply_to_a_vllm_server_not_the_embedded_engine() -> None:
    """The embedded engine's blank text over loud non-speech is right, it holds deltas while it
    decodes, and it admits legs by its own budget."""
    from bridge.app import leg_settings

    embedded = leg_settings(load_config(None, {"HOME": "/h"}))
    vllm = leg_settings(load_config(None, {"HOME": "/h", "BRIDGE_ASR_URL": "ws://a:1/v1/realtime"}))
    assert (embedded.max_step_lag_ms, vllm.max_step_lag_ms) == (0.0, 3000.0)
    assert (embedded.rut_after_s, vllm.rut_after_s) == (0.0, 8.0)


def test_asr_backends_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[asr]\nmodel = "m"\nmax_legs = 8\n'
        '[[asr.backends]]\nname = "gpu-a"\nurl = "ws://10.0.0.11:8000/v1/realtime"\nmax_legs = 24\n'
        'api_key_env = "GPU_A_KEY"\n'
        '[[asr.backends]]\nurl = "ws://10.0.0.12:8000/v1/realtime"\nmodel = "other"\n'
    )
    config = load_config(path, {"HOME": "/h", "GPU_A_KEY": "k-a", "BRIDGE_ASR_API_KEY": "k"})
    a, b = config.asr.backends
    assert (a.name, a.url, a.model, a.api_key, a.max_legs) == (
        "gpu-a",
        "ws://10.0.0.11:8000/v1/realtime",
        "m",
        "k-a",
        24,
    )
    # Unnamed: host:port; the rest from [asr].
    assert (b.name, b.model, b.api_key, b.max_legs, b.dialect) == (
        "10.0.0.12:8000",
        "other",
        "k",
        8,
        "vllm",
    )


def test_asr_backends_from_the_environment() -> None:
    environ = {
        "HOME": "/h",
        "BRIDGE_ASR_BACKENDS": "ws://a:1/v1/realtime, ws://b:1/v1/realtime",
        "BRIDGE_ASR_MAX_LEGS": "12",
    }
    backends = load_config(None, environ).asr.backends
    assert [(b.name, b.max_legs) for b in backends] == [("a:1", 12), ("b:1", 12)]


def test_every_backend_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[asr]\nurl = "ws://x:1/v1/realtime"\n'
        '[[asr.backends]]\nurl = "ws://a:1/v1/realtime"\n'
        '[[asr.backends]]\nurl = "ws://a:1/v1/realtime/"\nname = "a:1"\n'
        '[[asr.backends]]\nurl = "http://c:1"\n'
        '[[asr.backends]]\nurl = "ws://d:1/v1/realtime"\nmax_legs = -1\ndialect = "grpc"\n'
        'api_key_env = "UNSET"\nport = 1\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"HOME": "/h"})
    where = f"{path}: asr.backends"
    assert info.value.problems == [
        f"{where} #3: url 'http://c:1': expected ws://host:port/v1/realtime (or wss://)",
        f"{where} #4: unknown key(s) port (known: name, url, model, dialect, max_legs, "
        "api_key_env)",
        f"{where} #4: max_legs -1: expected an integer >= 0 (0: no limit)",
        f"{where} #4: dialect 'grpc': expected one of vllm, openai",
        f"{where} #4: api_key_env 'UNSET' names no variable that is set",
        f"{where}: url 'ws://a:1/v1/realtime' is listed twice",
        f"{where}: name 'a:1' is listed twice (a name defaults to the URL's host:port)",
        f"{path}: asr.url and {path}: asr.backends: set one (asr.url is the pool of one server)",
    ]


def test_the_dialect_is_one_per_pool_and_asr_dialect_is_every_servers_default(
    tmp_path: Path,
) -> None:
    from bridge.app import leg_settings, pool_from

    path = tmp_path / "bridge.toml"
    path.write_text(
        '[asr]\ndialect = "openai"\n'
        '[[asr.backends]]\nurl = "ws://a:1/v1/realtime"\n'
        '[[asr.backends]]\nurl = "ws://b:1/v1/realtime?intent=transcription"\n'
    )
    config = load_config(path, {"HOME": "/h"})
    pool = pool_from(config)
    assert [b.endpoint.session_url for b in pool.backends] == [
        "ws://a:1/v1/realtime?intent=transcription",
        "ws://b:1/v1/realtime?intent=transcription",
    ]
    # Voxtral's guards read its step clock: off for the OpenAI dialect's turns.
    settings = leg_settings(config)
    assert (settings.rut_after_s, settings.max_step_lag_ms) == (0.0, 0.0)
    one = load_config(
        None,
        {
            "HOME": "/h",
            "BRIDGE_ASR_URL": "ws://a:1/v1/realtime",
            "BRIDGE_ASR_DIALECT": "openai",
            "BRIDGE_ASR_PROMPT": "Acme Telecom, fibre, router",
        },
    )
    assert pool_from(one).dialect == "openai"
    assert pool_from(one).first.prompt == "Acme Telecom, fibre, router"
    assert leg_settings(one).g711_passthrough
    off = {"HOME": "/h", "BRIDGE_ASR_G711_PASSTHROUGH": "no"}
    assert not leg_settings(load_config(None, off)).g711_passthrough

    path.write_text(
        '[asr]\ndialect = "sip"\n'
        '[[asr.backends]]\nurl = "ws://a:1/v1/realtime"\n'
        '[[asr.backends]]\nurl = "ws://b:1/v1/realtime"\ndialect = "openai"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"HOME": "/h"})
    assert info.value.problems == [
        f"{path}: asr.backends #1: dialect 'sip': expected one of vllm, openai",
        f"{path}: asr.dialect: dialect 'sip': expected one of vllm, openai",
    ]
    path.write_text(
        '[[asr.backends]]\nurl = "ws://a:1/v1/realtime"\n'
        '[[asr.backends]]\nurl = "ws://b:1/v1/realtime"\ndialect = "openai"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"HOME": "/h"})
    assert info.value.problems == [
        f"{path}: asr.backends: the servers speak openai and vllm: every server of the pool "
        "must speak one dialect"
    ]


def test_redaction_defaults_to_cards_and_codes_and_every_problem_is_told(tmp_path: Path) -> None:
    from bridge.app import leg_settings

    default = load_config(None, {"HOME": "/h"}).redaction
    assert (default.entities, default.dtmf) == (("card", "cvv"), True)
    assert leg_settings(load_config(None, {"HOME": "/h"})).redaction == default
    environ = {
        "HOME": "/h",
        "BRIDGE_REDACTION_ENTITIES": "card,cvv,email,phone",
        "BRIDGE_REDACTION_LANGUAGES": "es",
        "BRIDGE_REDACTION_MASK_DTMF": "false",
    }
    chosen = load_config(None, environ).redaction
    assert (chosen.entities, chosen.languages, chosen.dtmf) == (
        ("card", "cvv", "email", "phone"),
        ("es",),
        False,
    )
    path = tmp_path / "bad.toml"
    path.write_text('[redaction]\nentities = ["cards", "email"]\nlanguages = ["xx"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {"HOME": "/h"})
    assert info.value.problems == [
        f"{path}: redaction.entities: unknown 'cards' (known: card, cvv, iban, national_id, "
        "phone, bank_account, email, dob)",
        f"{path}: redaction.languages: unknown 'xx' (known: en, es, fr, de)",
    ]
