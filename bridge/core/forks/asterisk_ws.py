"""Asterisk ``chan_websocket``: its control messages (text frames) and media formats.

docs/media-forks.md §2.  ``Dial(WebSocket/<connection>/c(slin16)v(call=...,role=...))`` (Asterisk
20.16/21.11/22.6/23.0 and later) connects to the URL that ``websocket_client.conf`` names for
``<connection>``; binary frames are media in the channel's format, text frames are control.
Sources: ``channels/chan_websocket.c`` (``_create_event_MEDIA_START`` and the other
``_create_event_*`` printers) and the Asterisk documentation's "WebSocket" channel-driver page.

The first text message is ``MEDIA_START`` in one of two forms:

* plain text, "deprecated but not yet removed"; older releases send only
  ``MEDIA_START connection_id:<id> channel:<name> optimal_frame_size:<n>``, newer ones
  ``... channel_id:<uniqueid> format:<name> optimal_frame_size:<n> ptime:<ms>``;
* JSON (``control_message_format = json`` in ``chan_websocket.conf``, or ``f(json)`` in the dial
  string; 20.18/22.8/23.2 and later): ``{"event": "MEDIA_START", "connection_id": ...,
  "channel": ..., "channel_id": ..., "format": "ulaw", "optimal_frame_size": 160, "ptime": 20,
  "channel_variables": {...}}``.

Later events the driver sends: ``DTMF_END`` (``DTMF_END digit:5 channel_id:...`` or
``{"event": "DTMF_END", "digit": "5", ...}``), ``ERROR``, and the playback side's
``MEDIA_XOFF``/``MEDIA_XON``, ``QUEUE_DRAINED``, ``MEDIA_BUFFERING_COMPLETED``,
``MEDIA_MARK_PROCESSED`` and ``STATUS``.  There is no hangup event: at hangup the driver closes
the WebSocket ("``ast_websocket_close(..., ast_channel_tech_hangupcause(ast) ?: 1000)``").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bridge.core.numbers import parse_uint
from bridge.core.types import AudioEncoding, LegRole
from bridge.errors import RemoteProtocolError

# "The maximum websocket message size the underlying websocket code can handle is 65500 bytes."
MAX_MESSAGE: Final = 65_500
# Asterisk format names (``ast_format_get_name``) -> rate and sample encoding.  ``slin*`` is
# signed linear in host order: little-endian on every platform Asterisk ships for.
FORMATS: Final[Mapping[str, tuple[int, AudioEncoding]]] = {
    "ulaw": (8000, AudioEncoding.PCMU),
    "alaw": (8000, AudioEncoding.PCMA),
    "slin": (8000, AudioEncoding.PCM16),
    "slin16": (16000, AudioEncoding.PCM16),
    "slin24": (24000, AudioEncoding.PCM16),
    "slin32": (32000, AudioEncoding.PCM16),
    "slin44": (44100, AudioEncoding.PCM16),
    "slin48": (48000, AudioEncoding.PCM16),
}
# Notifications about audio the app sends *to* Asterisk; the bridge sends none, so they carry
# nothing for a transcript.
PLAYBACK_EVENTS: Final = frozenset(
    {
        "MEDIA_XOFF",
        "MEDIA_XON",
        "QUEUE_DRAINED",
        "MEDIA_BUFFERING_COMPLETED",
        "MEDIA_MARK_PROCESSED",
        "STATUS",
    }
)
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
CALL_VARIABLE: Final = "BRIDGE_CALL"  # the call's key, set on both directions' channels
ROLE_VARIABLE: Final = "BRIDGE_ROLE"  # caller | callee | agent | customer
MAX_KEY: Final = 128
_EVENT = re.compile(r"[A-Z][A-Z0-9_]{0,63}", re.ASCII)
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)


class UnsupportedFormat(RemoteProtocolError):
    """A format the bridge does not decode (opus, g729 passthrough, ...): closed with 1003."""


@dataclass(frozen=True, slots=True)
class MediaStart:
    """What ``MEDIA_START`` says about the channel that streams on this connection."""

    connection_id: str
    format: str  # the Asterisk format name, one of FORMATS
    rate_hz: int
    encoding: AudioEncoding
    channel: str = ""  # e.g. WebSocket/connection1/0x7f0c2c001234
    channel_id: str = ""  # the channel's uniqueid, e.g. 1761245643.1
    optimal_frame_size: int | None = None  # bytes of one ptime of audio
    ptime_ms: int | None = None
    channel_variables: dict[str, str] = field(default_factory=dict)
    json: bool = False  # the JSON control format, otherwise plain text
    extra: dict[str, object] = field(default_factory=dict)  # keys this reader does not know

    def variable(self, name: str) -> str | None:
        """A channel variable by name, inherited ones (``_NAME``, ``__NAME``) included."""
        for key, value in self.channel_variables.items():
            if key.lstrip("_") == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Control:
    """A text message after ``MEDIA_START``: its event name and fields."""

    event: str
    fields: dict[str, object]


def read_control(text: str) -> Control:
    """One text message in either control format (JSON when it starts with ``{``)."""
    if len(text) > MAX_MESSAGE:
        raise RemoteProtocolError(f"a control message of {len(text)} characters (at most 65,500)")
    text = text.strip()
    if text.startswith("{"):
        return _read_json(text)
    return _read_plain(text)


def _read_json(text: str) -> Control:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RemoteProtocolError(f"a control message that is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError("a JSON control message that is not an object")
    event = value.pop("event", None)
    if not isinstance(event, str) or not _EVENT.fullmatch(event):
        raise RemoteProtocolError('a JSON control message without an "event" name')
    return Control(event, value)


def _read_plain(text: str) -> Control:
    """``EVENT key:value key:value ...``; a word with no ``key:`` continues the value before it
    (``ERROR ... error_text:Unable to parse JSON command``) or, first, is the event's id
    (``MEDIA_BUFFERING_COMPLETED <id>``)."""
    event, _, rest = text.partition(" ")
    if not _EVENT.fullmatch(event):
        shown = text[:40]
        raise RemoteProtocolError(f"a control message that names no event: {shown!r}")
    fields: dict[str, object] = {}
    last: str | None = None
    for word in rest.split():
        key, colon, value = word.partition(":")
        if colon and _KEY.fullmatch(key):
            if key in fields:
                raise RemoteProtocolError(f"{event}: {key} given twice")
            fields[key] = value
            last = key
        elif last is not None:
            fields[last] = f"{fields[last]} {word}"
        else:
            fields["id"] = f"{fields['id']} {word}" if "id" in fields else word
    return Control(event, fields)


def read_media_start(text: str, *, default_format: str | None = None) -> MediaStart:
    """The first text message.  ``default_format`` (the stream URL's ``format=``) stands in for
    the format that MEDIA_START of releases before the format field did not name.

    Raises:
        RemoteProtocolError: not MEDIA_START, a missing ``connection_id`` or format, a field
            of the wrong type.
        UnsupportedFormat: a format the bridge does not take (close 1003).
    """
    control = read_control(text)
    if control.event != "MEDIA_START":
        raise RemoteProtocolError(f"{control.event} before MEDIA_START")
    fields = dict(control.fields)
    is_json = text.lstrip().startswith("{")
    connection_id = _text(fields.pop("connection_id", None), "connection_id", required=True)
    channel = _text(fields.pop("channel", None), "channel")
    channel_id = _text(fields.pop("channel_id", None), "channel_id")
    name = _text(fields.pop("format", None), "format") or default_format
    if not name:
        raise RemoteProtocolError(
            "MEDIA_START names no format: add format=<codec> to the stream URL (v(format=...))"
        )
    rate_hz, encoding = media_format(name)
    frame = _uint(fields.pop("optimal_frame_size", None), "optimal_frame_size", MAX_MESSAGE)
    ptime = _uint(fields.pop("ptime", None), "ptime", 1000, minimum=1)
    variables = _variables(fields.pop("channel_variables", None))
    return MediaStart(
        connection_id=connection_id,
        format=name,
        rate_hz=rate_hz,
        encoding=encoding,
        channel=channel,
        channel_id=channel_id,
        optimal_frame_size=frame,
        ptime_ms=ptime,
        channel_variables=variables,
        json=is_json,
        extra=fields,
    )


def media_format(name: str) -> tuple[int, AudioEncoding]:
    """An Asterisk format name -> (rate, encoding); :class:`UnsupportedFormat` otherwise."""
    found = FORMATS.get(name)
    if found is None:
        raise UnsupportedFormat(
            f"format {name[:20]!r} is not taken: use c(slin16), c(slin), c(ulaw) or c(alaw)"
        )
    return found


def read_dtmf(control: Control) -> str:
    """The digit of a ``DTMF_END`` event."""
    digit = control.fields.get("digit")
    if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS or len(digit) != 1:
        raise RemoteProtocolError(f"DTMF_END with digit {str(digit)[:10]!r}: expected 0-9 * # A-D")
    return digit.upper()


@dataclass(frozen=True, slots=True)
class Pairing:
    """Which call a connection belongs to and its side: ``role`` None takes the next free side
    (the first connection of a call is the caller, the second the callee)."""

    key: str
    role: LegRole | None
    shared: bool  # the key came from the URL or a channel variable (both directions share it)


def pairing(start: MediaStart, query: Mapping[str, str]) -> Pairing:
    """``call``/``role`` from the stream URL (``v(call=...,role=...)``), else the channel
    variables ``BRIDGE_CALL``/``BRIDGE_ROLE``; without a call key the connection is a call of
    its own, keyed by the channel's uniqueid."""
    key = query.get("call") or start.variable(CALL_VARIABLE) or ""
    role_text = query.get("role") or start.variable(ROLE_VARIABLE) or ""
    role: LegRole | None = None
    if role_text:
        try:
            role = LegRole(role_text.strip().lower())
        except ValueError:
            known = ", ".join(r.value for r in LegRole)
            raise RemoteProtocolError(f"role {role_text[:20]!r}: expected one of {known}") from None
    if key:
        if len(key) > MAX_KEY or not key.isprintable():
            raise RemoteProtocolError(f"call: at most {MAX_KEY} printable characters")
        return Pairing(key, role, True)
    own = start.channel_id or start.channel or start.connection_id
    return Pairing(own[:MAX_KEY], role, False)


def _text(value: object, what: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise RemoteProtocolError(f"MEDIA_START without {what}")
        return ""
    if not isinstance(value, str):
        raise RemoteProtocolError(f"MEDIA_START {what} is not a string")
    if len(value) > 256 or not value.isprintable():
        raise RemoteProtocolError(f"MEDIA_START {what}: at most 256 printable characters")
    return value


def _uint(value: object, what: str, maximum: int, *, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RemoteProtocolError(f"MEDIA_START {what} is not a number")
    text = str(value) if isinstance(value, int) else value
    return parse_uint(
        text, what=f"MEDIA_START {what}", max_digits=5, minimum=minimum, maximum=maximum
    )


def _variables(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RemoteProtocolError("MEDIA_START channel_variables is not an object")
    found: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(text, str):
            raise RemoteProtocolError(f"MEDIA_START channel variable {name[:40]!r} is not a string")
        found[name] = text
    return found
