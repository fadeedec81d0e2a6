"""Configuration: a TOML file, then ``BRIDGE_*`` environment variables, then command-line options.

Every problem is collected and reported at once (``ConfigError.problems``), each naming where the
value came from and what is expected, before anything starts.  Nothing else in the bridge reads
``os.environ``: the environment is passed in.

Example ``bridge.toml``::

    [asr]
    url = "ws://127.0.0.1:8000/v1/realtime"   # BRIDGE_ASR_URL
    model = "mistralai/Voxtral-Mini-4B-Realtime-2602"  # BRIDGE_ASR_MODEL
    # api_key: set BRIDGE_ASR_API_KEY instead of writing secrets into files
    delay_ms = 480               # the server's transcription delay (tekken.json)
    recycle_after_s = 120        # start a fresh ASR generation at the next pause after this
    max_buffer_s = 60            # audio kept per leg while the ASR server is unreachable

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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError
from bridge.http.auth import Principal, parse_tokens

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
    api_key: str | None = None
    language: str | None = None  # ISO 639-1 hint, for engines that use it
    delay_ms: int = 480
    recycle_after_s: float = 120.0
    max_buffer_s: float = 60.0
    stall_timeout_s: float = 30.0
    max_legs: int = 0  # legs the ASR server takes at once; 0: no limit (embedded: its own)


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
    serve: ServeConfig = field(default_factory=ServeConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    source: str = "defaults"  # where the settings came from, for the start-up summary


# (section, key) -> (environment variable, type)
_KEYS: dict[tuple[str, str], tuple[str | None, type]] = {
    ("asr", "url"): ("BRIDGE_ASR_URL", str),
    ("asr", "model"): ("BRIDGE_ASR_MODEL", str),
    ("asr", "api_key"): ("BRIDGE_ASR_API_KEY", str),
    ("asr", "language"): ("BRIDGE_ASR_LANGUAGE", str),
    ("asr", "delay_ms"): ("BRIDGE_ASR_DELAY_MS", int),
    ("asr", "recycle_after_s"): ("BRIDGE_ASR_RECYCLE_AFTER_S", float),
    ("asr", "max_buffer_s"): ("BRIDGE_ASR_MAX_BUFFER_S", float),
    ("asr", "stall_timeout_s"): ("BRIDGE_ASR_STALL_TIMEOUT_S", float),
    ("asr", "max_legs"): ("BRIDGE_ASR_MAX_LEGS", int),
    ("storage", "db"): ("BRIDGE_DB", str),
    ("segments", "pause_ms"): ("BRIDGE_SEGMENT_PAUSE_MS", int),
    ("segments", "max_segment_s"): ("BRIDGE_SEGMENT_MAX_S", float),
    ("serve", "host"): ("BRIDGE_HOST", str),
    ("serve", "port"): ("BRIDGE_PORT", int),
    ("http", "api_tokens"): ("BRIDGE_API_TOKENS", str),
    ("http", "retention_days"): ("BRIDGE_RETENTION_DAYS", float),
    ("http", "public_url"): ("BRIDGE_PUBLIC_URL", str),
    ("http", "webhook_url"): ("BRIDGE_WEBHOOK_URL", str),
    ("http", "webhook_secret"): ("BRIDGE_WEBHOOK_SECRET", str),
    ("webrtc", "stun"): ("BRIDGE_WEBRTC_STUN", str),  # comma-separated URLs
    ("webrtc", "turn"): ("BRIDGE_WEBRTC_TURN", str),
    ("webrtc", "turn_username"): ("BRIDGE_WEBRTC_TURN_USERNAME", str),
    ("webrtc", "turn_password"): ("BRIDGE_WEBRTC_TURN_PASSWORD", str),
    ("webrtc", "max_sessions"): ("BRIDGE_WEBRTC_MAX_SESSIONS", int),
    ("webrtc", "public_address"): ("BRIDGE_WEBRTC_PUBLIC_ADDRESS", str),
}


def load_config(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[tuple[str, str], object] | None = None,
) -> BridgeConfig:
    """Build the configuration from file, environment and CLI overrides (in that order).

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[str] = []
    values: dict[tuple[str, str], tuple[object, str]] = {}
    sources = []
    if path is None and environ.get("BRIDGE_CONFIG"):
        path = Path(environ["BRIDGE_CONFIG"])
    if path is not None:
        sources.append(str(path))
        _read_file(path, values, problems)
    for key, (env, kind) in _KEYS.items():
        if env and env in environ and environ[env] != "":
            values[key] = (_convert(environ[env], kind, env, problems), env)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = (value, "--" + key[1].replace("_", "-"))
    if any(origin.startswith("BRIDGE_") for _, origin in values.values()):
        sources.append("environment")
    config = _build(values, environ, problems)
    if problems:
        raise ConfigError(problems)
    return replace(config, source=", ".join(sources) or "defaults")


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The TOML document at ``path``, or None with the reason added to ``problems``."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: config file not found")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
    return None


def _read_file(
    path: Path, values: dict[tuple[str, str], tuple[object, str]], problems: list[str]
) -> None:
    data = read_toml(path, problems)
    if data is None:
        return
    for section, table in data.items():
        if section == "sip":
            continue  # read by sip_config.load_sip_settings
        if not isinstance(table, dict):
            problems.append(f"{path}: [{section}] must be a table")
            continue
        for key, value in table.items():
            if (section, key) not in _KEYS:
                known = sorted(k for s, k in _KEYS if s == section)
                hint = f" (known: {', '.join(known)})" if known else " (unknown section)"
                problems.append(f"{path}: unknown setting {section}.{key}{hint}")
                continue
            values[(section, key)] = (value, f"{path}: {section}.{key}")


def _convert(raw: str, kind: type, origin: str, problems: list[str]) -> object:
    try:
        return kind(raw)
    except ValueError:
        problems.append(f"{origin}={raw!r}: expected {kind.__name__}")
        return None


def _build(
    values: dict[tuple[str, str], tuple[object, str]],
    environ: Mapping[str, str],
    problems: list[str],
) -> BridgeConfig:
    def get(section: str, key: str, default: Any) -> Any:
        if (section, key) not in values:
            return default
        value, origin = values[(section, key)]
        kind = _KEYS[(section, key)][1]
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            problems.append(f"{origin}: expected {kind.__name__}, got {value!r}")
            return default
        return value

    asr = AsrConfig(
        url=get("asr", "url", None),
        model=get("asr", "model", DEFAULT_MODEL),
        api_key=get("asr", "api_key", None),
        language=get("asr", "language", None),
        delay_ms=get("asr", "delay_ms", 480),
        recycle_after_s=get("asr", "recycle_after_s", 120.0),
        max_buffer_s=get("asr", "max_buffer_s", 60.0),
        stall_timeout_s=get("asr", "stall_timeout_s", 30.0),
        max_legs=get("asr", "max_legs", 0),
    )
    if asr.max_legs < 0:
        problems.append(f"ASR max_legs must be >= 0 (0: no limit), got {asr.max_legs}")
    if asr.url is not None and not asr.url.startswith(("ws://", "wss://")):
        problems.append(f"ASR url {asr.url!r}: expected ws://host:port/v1/realtime (or wss://)")
    if asr.delay_ms not in VALID_DELAYS_MS:
        problems.append(
            f"ASR delay_ms {asr.delay_ms}: must be a multiple of 80 in 80..1200, or 2400"
        )
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
        asr=asr, db_path=db_path, segments=segments, serve=serve, http=http, webrtc=webrtc
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
