"""Twilio Media Streams: the JSON messages of one stream, read in order, and the handshake's
signature.  Pure: no I/O.

docs/media-forks.md §4.2.  Sources: Twilio's "Media Streams - WebSocket Messages"
(https://www.twilio.com/docs/voice/media-streams/websocket-messages), "TwiML Voice: <Stream>"
(https://www.twilio.com/docs/voice/twiml/stream) and "Webhooks Security"
(https://www.twilio.com/docs/usage/webhooks/webhooks-security).  Twilio opens a WebSocket to the
``<Stream url>`` and sends text messages only, each a JSON object with an ``event``::

    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...",
     "start": {"accountSid": "AC...", "streamSid": "MZ...", "callSid": "CA...",
               "tracks": ["inbound", "outbound"], "customParameters": {"agent": "alice"},
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "sequenceNumber": "3", "streamSid": "MZ...",
     "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "<base64>"}}
    {"event": "dtmf", "sequenceNumber": "5", "streamSid": "MZ...",
     "dtmf": {"track": "inbound_track", "digit": "1"}}
    {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ...", "mark": {"name": "x"}}
    {"event": "stop", "sequenceNumber": "5", "streamSid": "MZ...",
     "stop": {"accountSid": "AC...", "callSid": "CA..."}}

"``connected``: the first message your WebSocket server receives"; "``start``: sent immediately
after the connected message"; "``sequenceNumber``: number used to keep track of message sending
order.  The first message starts with number "1" and then is incremented"; ``media.timestamp``:
"presentation timestamp in milliseconds from the start of the stream"; ``media.payload``: "raw
audio encoded in base64" (µ-law 8 kHz mono, the only ``mediaFormat``).  :class:`StreamReader`
holds a stream to exactly that and raises :class:`~bridge.errors.RemoteProtocolError` saying
what broke it.

The upgrade request carries ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the account's
auth token, of the full URL Twilio requested (a WebSocket request has no POST parameters to
append) — :func:`signature_matches`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from bridge.core.numbers import BadNumber, parse_uint
from bridge.core.types import LegRole, roles_from_text
from bridge.errors import RemoteProtocolError

TRACKS: Final = ("inbound", "outbound")
EVENTS: Final = ("start", "media", "dtmf", "mark", "stop")  # after "connected"
# The one mediaFormat Twilio sends: "audio/x-mulaw", "always 8000", one channel.
MEDIA_FORMAT: Final = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
RATE_HZ: Final = 8000
SAMPLES_PER_MS: Final = RATE_HZ // 1000
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
DEFAULT_ROLES: Final = {"inbound": LegRole.CALLER, "outbound": LegRole.CALLEE}
ROLES_PARAMETER: Final = "roles"  # <Parameter name="roles" value="customer,agent"/>
MAX_SID: Final = 64  # Twilio SIDs are 34 characters; compatible platforms send UUIDs
MAX_PARAMETERS: Final = 100
MAX_PARAMETER_TEXT: Final = 1024
MAX_PAYLOAD: Final = 65_536  # decoded bytes of one media message (Twilio sends 160 per 20 ms)


@dataclass(frozen=True, slots=True)
class Start:
    """The stream's ``start``: its ids, tracks (in the order announced) and custom parameters."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    parameters: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        """What the bridge stores as the ``twilio.start`` call event."""
        return {
            "callSid": self.call_sid,
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "tracks": list(self.tracks),
            "customParameters": dict(self.parameters),
        }


@dataclass(frozen=True, slots=True)
class Media:
    """One ``media`` message: ``payload`` is µ-law; ``position`` its first sample (8 kHz) in the
    stream, from ``timestamp``."""

    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes

    @property
    def position(self) -> int:
        return self.timestamp_ms * SAMPLES_PER_MS


@dataclass(frozen=True, slots=True)
class Dtmf:
    track: str  # the media track it was heard on ("inbound_track" on the wire)
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str
    account_sid: str


Event = Start | Media | Dtmf | Mark | Stop | None  # None: ``connected``


class StreamReader:
    """One Media Stream's messages, in the order Twilio sends them (sans-I/O)."""

    def __init__(self) -> None:
        self.connected = False
        self.start: Start | None = None
        self.stopped = False
        self.sequence = 0  # the last sequenceNumber seen

    def read(self, text: str | bytes) -> Event:
        """The next message, checked against the stream so far."""
        if isinstance(text, bytes):
            raise RemoteProtocolError("a binary message: Twilio Media Streams send JSON text only")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise RemoteProtocolError(f"a message that is not JSON: {_shown(text)}") from None
        if not isinstance(message, dict):
            raise RemoteProtocolError(f"a message that is not a JSON object: {_shown(text)}")
        event = message.get("event")
        if self.stopped:
            raise RemoteProtocolError(f"{_name(event)} after stop")
        if not self.connected:
            if event != "connected":
                raise RemoteProtocolError(f"{_name(event)} before connected (the first message)")
            self.connected = True
            protocol = message.get("protocol")
            if protocol != "Call":
                raise RemoteProtocolError(f"connected: protocol {_shown(protocol)}, not 'Call'")
            _text(message, "version", "connected", limit=32)
            return None
        if event == "connected":
            raise RemoteProtocolError("a second connected message")
        if event not in EVENTS:
            raise RemoteProtocolError(
                f"unknown event {_shown(event)} (Twilio sends connected, start, media, dtmf, "
                "mark and stop)"
            )
        self._sequence(message, event)
        if event == "start":
            return self._start(message)
        start = self.start
        if start is None:
            raise RemoteProtocolError(f"{_name(event)} before start")
        sid = message.get("streamSid")
        if sid != start.stream_sid:
            raise RemoteProtocolError(
                f"{event}: streamSid {_shown(sid)} is not this stream's ({start.stream_sid})"
            )
        if event == "media":
            return self._media(_object(message, "media", "media"), start)
        if event == "dtmf":
            dtmf = _object(message, "dtmf", "dtmf")
            track = _text(dtmf, "track", "dtmf", limit=32)
            if not track.endswith("_track") or track[: -len("_track")] not in TRACKS:
                raise RemoteProtocolError(f"dtmf: track {_shown(track)}, not inbound_track")
            digit = _text(dtmf, "digit", "dtmf", limit=1)
            if digit not in DTMF_DIGITS:
                raise RemoteProtocolError(f"dtmf: digit {_shown(digit)} is not 0-9, *, #, A-D")
            return Dtmf(track[: -len("_track")], digit)
        if event == "stop":
            stop = _object(message, "stop", "stop")
            call_sid = _sid(stop, "callSid", "stop")
            if call_sid != start.call_sid:
                raise RemoteProtocolError(
                    f"stop: callSid {call_sid} is not this stream's ({start.call_sid})"
                )
            self.stopped = True
            return Stop(call_sid, _sid(stop, "accountSid", "stop"))
        return Mark(_text(_object(message, "mark", "mark"), "name", "mark", limit=256))

    def _sequence(self, message: Mapping[str, Any], event: object) -> None:
        number = _uint(message, "sequenceNumber", _name(event))
        if number <= self.sequence:
            raise RemoteProtocolError(
                f"{_name(event)}: sequenceNumber {number} after {self.sequence} (it must increase)"
            )
        self.sequence = number

    def _start(self, message: Mapping[str, Any]) -> Start:
        if self.start is not None:
            raise RemoteProtocolError("a second start message")
        start = _object(message, "start", "start")
        stream_sid = _sid(start, "streamSid", "start")
        if message.get("streamSid", stream_sid) != stream_sid:
            raise RemoteProtocolError("start: two different streamSids")
        media_format = start.get("mediaFormat")
        if media_format != MEDIA_FORMAT:
            raise RemoteProtocolError(
                f"start: mediaFormat {_shown(media_format)}; the bridge takes "
                "audio/x-mulaw at 8000 Hz, one channel"
            )
        tracks = start.get("tracks")
        if (
            not isinstance(tracks, list)
            or not 1 <= len(tracks) <= 2
            or any(t not in TRACKS for t in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            raise RemoteProtocolError(
                f"start: tracks {_shown(tracks)}; expected inbound and/or outbound"
            )
        parameters = start.get("customParameters", {})
        if (
            not isinstance(parameters, dict)
            or len(parameters) > MAX_PARAMETERS
            or not all(
                isinstance(v, str) and len(k) + len(v) <= MAX_PARAMETER_TEXT
                for k, v in parameters.items()
            )
        ):
            raise RemoteProtocolError(
                f"start: customParameters must be at most {MAX_PARAMETERS} names with text "
                f"values ({MAX_PARAMETER_TEXT} characters each)"
            )
        self.start = Start(
            stream_sid,
            _sid(start, "callSid", "start"),
            _sid(start, "accountSid", "start"),
            tuple(tracks),
            dict(parameters),
        )
        return self.start

    def _media(self, media: Mapping[str, Any], start: Start) -> Media:
        track = media.get("track")
        if track not in start.tracks:
            raise RemoteProtocolError(
                f"media: track {_shown(track)} was not announced in start "
                f"({', '.join(start.tracks)})"
            )
        encoded = media.get("payload")
        if not isinstance(encoded, str) or len(encoded) > MAX_PAYLOAD * 4 // 3 + 4:
            raise RemoteProtocolError(
                f"media: payload must be base64 text of at most {MAX_PAYLOAD}"
            )
        try:  # what base64.b64decode(validate=True) calls, without its copy to bytes
            payload = binascii.a2b_base64(encoded, strict_mode=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(f"media: payload {_shown(encoded)} is not base64") from None
        return Media(
            str(track),
            _uint(media, "chunk", "media"),
            _uint(media, "timestamp", "media"),
            payload,
        )


def roles_of(start: Start, parameters: Mapping[str, str]) -> tuple[LegRole, ...]:
    """The leg role of each of ``start``'s tracks: inbound ``caller`` and outbound ``callee``,
    unless the ``roles`` custom parameter names them ("inbound,outbound"; one name for a stream
    of one track)."""
    text = parameters.get(ROLES_PARAMETER)
    if text is None:
        return tuple(DEFAULT_ROLES[track] for track in start.tracks)
    try:
        named = roles_from_text(text, example="caller,callee")
    except ValueError as exc:
        raise RemoteProtocolError(f"customParameters roles: {exc}") from None
    if len(named) == 2:
        by_track = dict(zip(TRACKS, named, strict=True))
        return tuple(by_track[track] for track in start.tracks)
    if len(start.tracks) != 1:
        raise RemoteProtocolError("customParameters roles: name two (inbound,outbound)")
    return named


def expected_signature(auth_token: str, url: str) -> str:
    """``X-Twilio-Signature`` for ``url``: base64(HMAC-SHA1(auth token, URL)).  "Take the full
    URL of the request ... If the request is a POST, sort all the POST parameters" — an upgrade
    request has none, so the URL alone is signed."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(auth_token: str, url: str, signature: str) -> bool:
    """Whether ``signature`` signs ``url`` as given, or with its default port added or removed
    (Twilio's helper libraries accept both: "signature generation on back end is inconsistent")."""
    given = signature.encode()
    return any(
        hmac.compare_digest(expected_signature(auth_token, candidate).encode(), given)
        for candidate in _port_variants(url)
    )


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("wss", "https") else 80
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        return [url]
    if port is None:
        return [url, urlunsplit(parts._replace(netloc=f"{host}:{default}"))]
    if port == default:
        return [url, urlunsplit(parts._replace(netloc=host))]
    return [url]


def _object(message: Mapping[str, Any], key: str, event: str) -> Mapping[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{event}: {key} must be an object")
    return value


def _text(message: Mapping[str, Any], key: str, event: str, *, limit: int) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise RemoteProtocolError(
            f"{event}: {key} must be printable text of 1 to {limit} characters, got {_shown(value)}"
        )
    return value


def _sid(message: Mapping[str, Any], key: str, event: str) -> str:
    value = _text(message, key, event, limit=MAX_SID)
    if not value.isascii() or " " in value:
        raise RemoteProtocolError(f"{event}: {key} {_shown(value)} is not an id")
    return value


def _uint(message: Mapping[str, Any], key: str, event: str) -> int:
    """Twilio sends its counters as strings of digits ("sequenceNumber": "2")."""
    value = message.get(key)
    if isinstance(value, str) and 0 < len(value) <= 10 and value.isascii() and value.isdigit():
        return int(value)  # parse_uint's answer, without building its message first
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{event}: {key} must be a string of digits, got {_shown(value)}")
    try:
        return parse_uint(value, what=f"{event}: {key}", max_digits=10)
    except BadNumber as exc:
        raise RemoteProtocolError(str(exc)) from None


def _name(event: object) -> str:
    return event if isinstance(event, str) and len(event) <= 20 else _shown(event)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
