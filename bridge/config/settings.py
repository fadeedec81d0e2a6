"""The bridge's settings: ``[asr]``, ``[storage]``, ``[segments]``, ``[redaction]``
(:mod:`bridge.config.redaction`), ``[serve]``, ``[http]`` and ``[webrtc]`` of the TOML file,
their ``BRIDGE_*`` variables and command-line options, read by :mod:`bridge.config.reader` and
checked here (``[sip]``: :mod:`sip_config`).

Example ``bridge.toml``::

    [asr]
    url = "ws://127.0.0.1:8000/v1/realtime"   # BRIDGE_ASR_URL
    model = "mistralai/Voxtral-Mini-4B-Realtime-2602"  # BRIDGE_ASR_MODEL
    dialect = "vllm"             # BRIDGE_ASR_DIALECT: "openai" for an OpenAI transcription
    #                            # session (Dynamo, vLLM-Omni, Speaches, Riva NIM, OpenAI)
    g711_passthrough = true      # OpenAI dialect: 8 kHz G.711 legs send audio/pcmu or pcma
    # api_key: set BRIDGE_ASR_API_KEY instead of writing secrets into files
    delay_ms = 480               # the server's transcription delay (tekken.json)
    # model_dir = "/srv/models/voxtral-realtime"  # BRIDGE_ASR_MODEL_DIR: the served model's
    #                            # files; its delay and step clock are read from them
    recycle_after_s = 120        # start a fresh ASR generation at the next pause after this
    rut_after_s = 8              # speech with no text this long: a fresh generation (0: off)
    max_step_lag_ms = 3000       # text this far behind: no new calls until it catches up
    max_buffer_s = 60            # audio kept per leg while the ASR server is unreachable
    # Several servers: [[asr.backends]] tables instead of url (config/backends.py)

    [storage]
    db = "/var/lib/call-bridge/transcripts.db"  # BRIDGE_DB

    [segments]
    pause_ms = 800               # silence that ends an utterance
    max_segment_s = 30

    [serve]
    host = "127.0.0.1"           # BRIDGE_HOST
    port = 8080                  # BRIDGE_PORT

    [http]
    # api_tokens: set BRIDGE_API_TOKENS="TOKEN:supervisor,TOKEN2:agent:alice" (not in files)
    retention_days = 90          # BRIDGE_RETENTION_DAYS; delete ended calls older (0: keep all)
    public_url = "https://bridge.example.com"  # BRIDGE_PUBLIC_URL, for links in webhooks
    webhook_url = "https://crm.example.com/hooks/calls"  # BRIDGE_WEBHOOK_URL (optional)
    # webhook_secret: set BRIDGE_WEBHOOK_SECRET (HMAC-SHA256 key for X-Bridge-Signature)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bridge.auth import Principal, parse_tokens
from bridge.config.backends import DIALECTS, BackendConfig, build_backends
from bridge.config.ingest import SCHEMA as INGEST_SCHEMA
from bridge.config.ingest import (
    AriConfig,
    AudioSocketConfig,
    ForkSocketConfig,
    build_ari,
    build_audiosocket,
    build_fork_socket,
)
from bridge.config.reader import Read, Schema, Setting, config_path, read_settings
from bridge.config.redaction import SCHEMA as REDACTION_SCHEMA
from bridge.config.redaction import build_redaction
from bridge.core.redact import RedactionPolicy
from bridge.errors import ConfigError

DEFAULT_MODEL = "mistralai/Voxtral-Mini-4B-Realtime-2602"
VALID_DELAYS_MS = tuple(range(80, 1201, 80)) + (2400,)


def default_db_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/call-bridge/transcripts.db`` (``~/.local/share/...`` by default)."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME", "."), ".local/share")
    return Path(base) / "call-bridge" / "transcripts.db"


@dataclass(frozen=True, slots=True, kw_only=True)
class AsrConfig:
    url: str | None = None  # None: the embedded CPU engine, once available
    model: str = DEFAULT_MODEL
    dialect: str = "vllm"  # the servers' protocol (config/backends.py DIALECTS)
    g711_passthrough: bool = True  # OpenAI dialect: 8 kHz G.711 legs send their own bytes
    api_key: str | None = None
    language: str | None = None  # ISO 639-1 hint, for engines that use it
    prompt: str | None = None  # OpenAI dialect: context for the transcription model
    delay_ms: int | None = None  # None: the model directory's, else 480
    model_dir: Path | None = None  # the served model's files (tekken.json), read at start-up
    recycle_after_s: float = 120.0
    rut_after_s: float = 8.0  # vLLM #47614 guard (bridge/core/rut.py); 0: off
    max_step_lag_ms: float = 3000.0  # a server behind real time takes no new legs; 0: off
    max_buffer_s: float = 60.0
    stall_timeout_s: float = 30.0
    max_legs: int = 0  # legs the ASR server takes at once; 0: no limit (embedded: its own)
    backends: tuple[BackendConfig, ...] = ()  # the pool (config/backends.py); (): url


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentConfig:
    pause_ms: int = 800
    max_segment_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    api_tokens: dict[str, Principal] = field(default_factory=dict)  # token -> who
    retention_days: float = 0.0  # 0: keep every call
    public_url: str | None = None  # base of links in webhooks; default http://host:port
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcConfig:
    """WHIP ingest.  ICE servers are offered to aiortc for its candidates (RFC 8445)."""

    stun_urls: tuple[str, ...] = ()  # "stun:stun.example.com:3478": server-reflexive address
    turn_urls: tuple[str, ...] = ()  # "turn:turn.example.com:3478?transport=udp": relay
    turn_username: str | None = None
    turn_password: str | None = None  # secret: BRIDGE_WEBRTC_TURN_PASSWORD, never in files
    max_sessions: int = 16
    public_address: str | None = None  # 1:1 NAT: the public IP the host's ports are reachable on


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeConfig:
    asr: AsrConfig = field(default_factory=AsrConfig)
    db_path: Path = Path("transcripts.db")
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)
    serve: ServeConfig = field(default_factory=ServeConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    audiosocket: AudioSocketConfig = field(default_factory=AudioSocketConfig)
    forks: ForkSocketConfig = field(default_factory=ForkSocketConfig)
    ari: AriConfig = field(default_factory=AriConfig)
    source: str = "defaults"  # where the settings came from, for the start-up summary


SCHEMA: Schema = {
    "asr": {
        "url": Setting("BRIDGE_ASR_URL"),
        "model": Setting("BRIDGE_ASR_MODEL"),
        "dialect": Setting("BRIDGE_ASR_DIALECT"),
        "g711_passthrough": Setting("BRIDGE_ASR_G711_PASSTHROUGH", bool),
        "api_key": Setting("BRIDGE_ASR_API_KEY"),
        "language": Setting("BRIDGE_ASR_LANGUAGE"),
        "prompt": Setting("BRIDGE_ASR_PROMPT"),
        "delay_ms": Setting("BRIDGE_ASR_DELAY_MS", int),
        "model_dir": Setting("BRIDGE_ASR_MODEL_DIR"),
        "recycle_after_s": Setting("BRIDGE_ASR_RECYCLE_AFTER_S", float),
        "rut_after_s": Setting("BRIDGE_ASR_RUT_AFTER_S", float),
        "max_step_lag_ms": Setting("BRIDGE_ASR_MAX_STEP_LAG_MS", float),
        "max_buffer_s": Setting("BRIDGE_ASR_MAX_BUFFER_S", float),
        "stall_timeout_s": Setting("BRIDGE_ASR_STALL_TIMEOUT_S", float),
        "max_legs": Setting("BRIDGE_ASR_MAX_LEGS", int),
        "backends": Setting("BRIDGE_ASR_BACKENDS", list),  # URLs, or [[asr.backends]] tables
    },
    "storage": {"db": Setting("BRIDGE_DB")},
    "segments": {
        "pause_ms": Setting("BRIDGE_SEGMENT_PAUSE_MS", int),
        "max_segment_s": Setting("BRIDGE_SEGMENT_MAX_S", float),
    },
    "serve": {"host": Setting("BRIDGE_HOST"), "port": Setting("BRIDGE_PORT", int)},
    "http": {
        "api_tokens": Setting("BRIDGE_API_TOKENS"),
        "retention_days": Setting("BRIDGE_RETENTION_DAYS", float),
        "public_url": Setting("BRIDGE_PUBLIC_URL"),
        "webhook_url": Setting("BRIDGE_WEBHOOK_URL"),
        "webhook_secret": Setting("BRIDGE_WEBHOOK_SECRET"),
    },
    "webrtc": {
        "stun": Setting("BRIDGE_WEBRTC_STUN"),  # comma-separated URLs
        "turn": Setting("BRIDGE_WEBRTC_TURN"),
        "turn_username": Setting("BRIDGE_WEBRTC_TURN_USERNAME"),
        "turn_password": Setting("BRIDGE_WEBRTC_TURN_PASSWORD"),
        "max_sessions": Setting("BRIDGE_WEBRTC_MAX_SESSIONS", int),
        "public_address": Setting("BRIDGE_WEBRTC_PUBLIC_ADDRESS"),
    },
    **INGEST_SCHEMA,
    **REDACTION_SCHEMA,
}
SIP_SECTION = "sip"  # [sip] is read by sip_config.load_sip_settings


def load_config(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[tuple[str, str], object] | None = None,
) -> BridgeConfig:
    """Build the configuration from file, environment and CLI overrides (in that order).

    Raises:
        ConfigError: listing every problem found.
    """
    path = config_path(path, environ)
    read = read_settings(SCHEMA, path, environ, overrides=overrides, others=(SIP_SECTION,))
    config = _build(read, environ)
    if read.problems:
        raise ConfigError(read.problems)
    sources = [str(path)] if path is not None else []
    if read.from_environment:
        sources.append("environment")
    return replace(config, source=", ".join(sources) or "defaults")


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _build(read: Read, environ: Mapping[str, str]) -> BridgeConfig:
    get, problems = read.value, read.problems
    asr = AsrConfig(
        url=get("asr", "url", None),
        model=get("asr", "model", DEFAULT_MODEL),
        dialect=get("asr", "dialect", "vllm"),
        g711_passthrough=get("asr", "g711_passthrough", True),
        api_key=get("asr", "api_key", None),
        language=get("asr", "language", None),
        prompt=get("asr", "prompt", None),
        delay_ms=get("asr", "delay_ms", None),
        model_dir=_path(get("asr", "model_dir", None)),
        recycle_after_s=get("asr", "recycle_after_s", 120.0),
        rut_after_s=get("asr", "rut_after_s", 8.0),
        max_step_lag_ms=get("asr", "max_step_lag_ms", 3000.0),
        max_buffer_s=get("asr", "max_buffer_s", 60.0),
        stall_timeout_s=get("asr", "stall_timeout_s", 30.0),
        max_legs=get("asr", "max_legs", 0),
    )
    asr = replace(
        asr,
        backends=build_backends(
            read,
            environ,
            model=asr.model,
            dialect=asr.dialect,
            api_key=asr.api_key,
            max_legs=max(asr.max_legs, 0),
        ),
    )
    if asr.backends and asr.url is not None:
        problems.append(
            f"{read.origin('asr', 'url')} and {read.origin('asr', 'backends')}: set one (asr.url "
            "is the pool of one server)"
        )
    if asr.dialect not in DIALECTS:
        problems.append(
            f"{read.origin('asr', 'dialect')}: dialect {asr.dialect!r}: expected one of "
            f"{', '.join(DIALECTS)}"
        )
    if asr.max_legs < 0:
        problems.append(f"ASR max_legs must be >= 0 (0: no limit), got {asr.max_legs}")
    if asr.url is not None and not asr.url.startswith(("ws://", "wss://")):
        problems.append(f"ASR url {asr.url!r}: expected ws://host:port/v1/realtime (or wss://)")
    if asr.delay_ms is not None and asr.delay_ms not in VALID_DELAYS_MS:
        problems.append(
            f"ASR delay_ms {asr.delay_ms}: must be a multiple of 80 in 80..1200, or 2400"
        )
    for name in ("rut_after_s", "max_step_lag_ms"):
        if getattr(asr, name) < 0:
            problems.append(f"ASR {name} must be >= 0 (0: off), got {getattr(asr, name)}")
    for name in ("recycle_after_s", "max_buffer_s", "stall_timeout_s"):
        if getattr(asr, name) <= 0:
            problems.append(f"ASR {name} must be > 0, got {getattr(asr, name)}")
    segments = SegmentConfig(
        pause_ms=get("segments", "pause_ms", 800),
        max_segment_s=get("segments", "max_segment_s", 30.0),
    )
    if segments.pause_ms < 80:
        problems.append(f"segments pause_ms must be >= 80, got {segments.pause_ms}")
    serve = ServeConfig(host=get("serve", "host", "127.0.0.1"), port=get("serve", "port", 8080))
    if not 0 <= serve.port <= 65535:
        problems.append(f"serve port {serve.port}: must be 0..65535")
    db = get("storage", "db", None)
    db_path = Path(db).expanduser() if db else default_db_path(environ)
    tokens, token_problems = parse_tokens(get("http", "api_tokens", ""))
    problems.extend(f"http api_tokens: {p}" for p in token_problems)
    http = HttpConfig(
        api_tokens=tokens,
        retention_days=get("http", "retention_days", 0.0),
        public_url=get("http", "public_url", None),
        webhook_url=get("http", "webhook_url", None),
        webhook_secret=get("http", "webhook_secret", None),
    )
    if http.retention_days < 0:
        problems.append(f"http retention_days must be >= 0, got {http.retention_days}")
    for name in ("public_url", "webhook_url"):
        url = getattr(http, name)
        if url is not None and not url.startswith(("http://", "https://")):
            problems.append(f"http {name} {url!r}: expected an http:// or https:// URL")
    if http.webhook_url and not http.webhook_secret:
        problems.append(
            "http webhook_url is set but no webhook_secret: set BRIDGE_WEBHOOK_SECRET so "
            "receivers can verify X-Bridge-Signature"
        )
    webrtc = WebRtcConfig(
        stun_urls=_url_list(get("webrtc", "stun", ""), ("stun:", "stuns:"), "stun", problems),
        turn_urls=_url_list(get("webrtc", "turn", ""), ("turn:", "turns:"), "turn", problems),
        turn_username=get("webrtc", "turn_username", None),
        turn_password=get("webrtc", "turn_password", None),
        max_sessions=get("webrtc", "max_sessions", 16),
        public_address=get("webrtc", "public_address", None),
    )
    if webrtc.turn_urls and not (webrtc.turn_username and webrtc.turn_password):
        problems.append(
            "webrtc turn is set but no turn_username/BRIDGE_WEBRTC_TURN_PASSWORD: TURN servers "
            "need credentials"
        )
    if webrtc.public_address is not None:
        try:
            ipaddress.ip_address(webrtc.public_address)
        except ValueError:
            problems.append(
                f"webrtc public_address {webrtc.public_address!r}: expected an IP address "
                "(the 1:1 NAT's public IP; for other NATs use STUN/TURN)"
            )
    if webrtc.max_sessions < 1:
        problems.append(f"webrtc max_sessions must be >= 1, got {webrtc.max_sessions}")
    return BridgeConfig(
        asr=asr,
        db_path=db_path,
        segments=segments,
        redaction=build_redaction(read),
        serve=serve,
        http=http,
        webrtc=webrtc,
        audiosocket=build_audiosocket(read),
        forks=build_fork_socket(read),
        ari=build_ari(read),
    )


def _url_list(
    text: str, schemes: tuple[str, ...], name: str, problems: list[str]
) -> tuple[str, ...]:
    """``"stun:a:3478, stun:b"`` -> a tuple, each URL checked for its scheme (RFC 7064/7065)."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        if not url.startswith(schemes):
            problems.append(f"webrtc {name} {url!r}: expected {' or '.join(schemes)}host:port")
    return urls
