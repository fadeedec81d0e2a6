"""jambonz: the ``listen`` verb's audio stream and the custom speech (STT) API (sans-I/O).

docs/media-forks.md §4.1.  Two ways jambonz sends a call's audio to a WebSocket server:

* **listen** (``jambonz-feature-server`` ``lib/tasks/listen.js``; docs ``webhooks/listen``):
  subprotocol ``audio.jambonz.org``, optional HTTP Basic auth (the verb's ``wsAuth``), "one
  text frame is sent immediately after the websocket connection is established.  This text
  frame contains a JSON string with all of the call attributes [...] plus sampleRate and
  mixType" — ``Object.assign({sampleRate, mixType}, callInfo, metadata)``, so the verb's
  ``metadata`` keys sit beside ``callSid``, ``from``, ``to``.  Then binary L16 little-endian at
  ``sampleRate``; ``mono`` the caller, ``stereo`` both parties (caller left), ``mixed`` both
  summed.  With ``passDtmf`` jambonz also sends ``{"event": "dtmf", "dtmf": "5", ...}``.
* **custom speech vendor** (docs ``supporting-articles/custom-speech-stt``;
  ``freeswitch-modules`` ``mod_jambonz_transcribe/jb_transcribe_glue.cpp`` ``sendStartMessage``;
  ``jambonz/custom-speech-example``): ``Authorization: Bearer <apiKey>``, a ``start`` message
  ``{type, language, format: "raw", encoding: "LINEAR16", interimResults, sampleRateHz: 8000,
  options}``, binary LINEAR16 mono, ``{"type": "stop"}``.  The server answers
  ``{type: "transcription", is_final, alternatives: [{transcript, confidence}], language,
  channel}`` or ``{type: "error", error}``, and closes the socket after the stop.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.core.types import LegRole, roles_from_text
from bridge.errors import RemoteProtocolError

LISTEN_SUBPROTOCOL: Final = "audio.jambonz.org"
MIXES: Final = {
    "mono": (LegRole.CALLER,),
    "stereo": (LegRole.CALLER, LegRole.CALLEE),
    "mixed": (LegRole.SPEAKER,),
}
MIN_RATE_HZ: Final = 8000  # the listen docs: 8000, 16000, 24000, 48000 or 64000
MAX_RATE_HZ: Final = 64000
MAX_START: Final = 65_536  # characters of a start message read
MAX_KEY: Final = 128  # characters of a callSid
DTMF: Final = frozenset("0123456789*#ABCDabcd")


def _object(text: str, what: str) -> dict[str, Any]:
    if len(text) > MAX_START:
        raise RemoteProtocolError(f"{what} is {len(text)} characters (at most {MAX_START})")
    try:
        value = json.loads(text)
    except ValueError:
        raise RemoteProtocolError(f"{what} is not JSON: {text[:40]!r}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{what} is not a JSON object: {text[:40]!r}")
    return value


def _rate(value: object, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RemoteProtocolError(f"{name}={str(value)[:20]!r} is not a sample rate in Hz")
    if not MIN_RATE_HZ <= value <= MAX_RATE_HZ:
        raise RemoteProtocolError(f"{name}={value}: jambonz sends {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    return value


def _key(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_KEY or not value.isprintable():
        raise RemoteProtocolError(f"{name}: at most {MAX_KEY} printable characters")
    return value


def _roles(
    query: Mapping[str, str], name: str, default: tuple[LegRole, ...]
) -> tuple[LegRole, ...]:
    if name not in query:
        return default
    try:
        return roles_from_text(query[name], example="caller,callee")
    except ValueError as exc:
        raise RemoteProtocolError(f"{name}: {exc}") from None


# -- listen ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenStart:
    """The first text frame of a ``listen`` stream: the call, its audio and the attributes."""

    call_sid: str | None
    mix: str
    rate_hz: int
    roles: tuple[LegRole, ...]  # one per channel: mono/mixed 1, stereo 2
    attributes: dict[str, Any] = field(default_factory=dict)  # everything jambonz sent

    @property
    def title(self) -> str:
        caller, called = self.attributes.get("from"), self.attributes.get("to")
        if isinstance(caller, str) and isinstance(called, str) and caller and called:
            return f"jambonz {caller[:40]} → {called[:40]}"
        return f"jambonz {self.call_sid or 'call'}"


def read_listen_start(text: str, query: Mapping[str, str]) -> ListenStart:
    """The first text frame (``roles`` in the URL may name the sides, as for FreeSWITCH)."""
    attributes = _object(text, "the listen start message")
    mix = attributes.get("mixType", "mono")
    if mix not in MIXES:
        raise RemoteProtocolError(f"mixType={str(mix)[:20]!r}: expected mono, stereo or mixed")
    rate = _rate(attributes.get("sampleRate"), "sampleRate", 8000)
    channels = 2 if mix == "stereo" else 1
    roles = _roles(query, "roles", MIXES[mix])
    if len(roles) < channels:
        raise RemoteProtocolError(f"mixType={mix} has {channels} channels: name a role for each")
    call_sid = _key(attributes.get("callSid"), "callSid")
    return ListenStart(call_sid, mix, rate, roles[:channels], attributes)


def read_listen_dtmf(text: str) -> str | None:
    """A later text frame: the digit of a ``passDtmf`` event, ``None`` for anything else."""
    try:
        value = json.loads(text[:MAX_START])
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("event") != "dtmf":
        return None
    digit = value.get("dtmf")
    return digit if isinstance(digit, str) and len(digit) == 1 and digit in DTMF else None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic base64(user:password)`` (RFC 7617) -> the pair, else ``None``."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


# -- custom speech (STT) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SttStart:
    """``{"type": "start", ...}``: what jambonz wants recognised and how the audio comes."""

    language: str
    rate_hz: int
    interim: bool
    options: dict[str, Any]
    call_sid: str | None


@dataclass(frozen=True, slots=True)
class SttStop:
    """``{"type": "stop"}``: no more audio; send the final text and close."""


@dataclass(frozen=True, slots=True)
class SttOther:
    """A JSON message of a type the API does not define (answered with an error)."""

    type: str


SttControl = SttStart | SttStop | SttOther


def read_stt_control(text: str) -> SttControl:
    message = _object(text, "the control message")
    kind = message.get("type")
    if kind == "stop":
        return SttStop()
    if kind != "start":
        return SttOther(str(kind)[:40])
    encoding = message.get("encoding", "LINEAR16")
    if encoding != "LINEAR16":
        raise RemoteProtocolError(f"encoding={str(encoding)[:20]!r}: the bridge takes LINEAR16")
    audio_format = message.get("format", "raw")
    if audio_format != "raw":
        raise RemoteProtocolError(f"format={str(audio_format)[:20]!r}: the bridge takes raw")
    language = message.get("language", "")
    if not isinstance(language, str) or len(language) > 35:
        raise RemoteProtocolError("language: a language tag such as en-US")
    interim = message.get("interimResults", False)
    if not isinstance(interim, bool):
        raise RemoteProtocolError("interimResults: true or false")
    options = message.get("options", {})
    if not isinstance(options, dict):
        raise RemoteProtocolError("options: a JSON object")
    rate = _rate(message.get("sampleRateHz"), "sampleRateHz", 8000)
    call_sid = _key(message.get("callSid", options.get("callSid")), "callSid")
    return SttStart(language, rate, interim, options, call_sid)


def stt_role(query: Mapping[str, str]) -> LegRole:
    """The side a custom-speech socket carries: ``?role=`` (or ``roles=``), else the caller."""
    name = "role" if "role" in query else "roles"
    return _roles(query, name, (LegRole.CALLER,))[0]


def transcription(text: str, *, final: bool, language: str) -> dict[str, Any]:
    """A ``transcription`` message.  The model reports no confidence; jambonz requires one
    ("a confidence probability, between 0 and 1"), so 1.0 is sent."""
    return {
        "type": "transcription",
        "is_final": final,
        "alternatives": [{"transcript": text, "confidence": 1.0}],
        "language": language,
        "channel": 1,  # "default to 1"
    }


def stt_error(message: str) -> dict[str, Any]:
    return {"type": "error", "error": message}
