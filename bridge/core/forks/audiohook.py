"""Genesys Cloud AudioHook protocol v2, the server side: messages, seq counters, media (sans-I/O).

docs/media-forks.md §4.3.  Sources: the AudioHook protocol specification in the Genesys Cloud
Developer Center and Genesys' reference server, purecloudlabs/audiohook-reference-implementation
(``app/audiohook/src/protocol/message.ts``, ``validators.ts``, ``server/serversessionimpl.ts``).

Genesys (the client) opens a WebSocket; text messages are JSON with ``version`` ``"2"``, ``id``
(the session UUID), ``type``, ``seq`` and ``parameters``; the client's also carry ``serverseq``
(the last server ``seq`` it saw) and ``position`` (the audio position, an ISO 8601 duration such
as ``PT1.5S``); the server's carry ``clientseq`` instead.  "Sequence numbers ... seq: must be
monotonically increasing" — the reference server refuses a ``seq`` that is not the previous one
plus one, a ``serverseq`` above what it sent, and an ``id`` other than the session's.  Binary
messages are audio in the format the server accepted in ``opened``, the channels interleaved in
the order of its ``channels`` list (``external``: the customer; ``internal``: the agent).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from bridge.errors import RemoteProtocolError

VERSION: Final = "2"
NULL_UUID: Final = "00000000-0000-0000-0000-000000000000"
MAX_TEXT: Final = 65_535  # "Text message too large (>64K)" (the reference server)
# The reference's uuidRegex (RFC 4122 versions 1-5, or the null UUID), ASCII only.
UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    rf"|{NULL_UUID}",
    re.ASCII,
)
# "ISO8601 duration in seconds ... non-negative decimal": the reference's /^PT(?:\d*\.)?\d+S$/,
# with ASCII digits only (\d would take "٣") and bounded lengths (no 5,000-digit numbers).
DURATION_RE: Final = re.compile(r"PT(?:[0-9]{0,9}\.)?[0-9]{1,9}S", re.ASCII)
CLIENT_TYPES: Final = ("open", "close", "discarded", "error", "paused", "ping", "resumed", "update")
CLOSE_REASONS: Final = ("end", "error", "disconnect", "reconnect")
FORMATS: Final = ("PCMU", "L16")
CHANNELS: Final = ("external", "internal")
RATE: Final = 8000  # MediaRate = 8000


def parse_duration(value: object, *, what: str) -> float:
    """``"PT1.5S"`` -> 1.5 (seconds); anything else is a protocol error naming ``what``."""
    if not isinstance(value, str) or not DURATION_RE.fullmatch(value):
        shown = repr(value)[:30]
        raise RemoteProtocolError(f"{what}: {shown} is not an ISO 8601 duration like PT1.5S")
    return float(value[2:-1])


def format_duration(seconds: float) -> str:
    """1.5 -> ``"PT1.5S"`` (milliseconds at most)."""
    text = f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


@dataclass(frozen=True, slots=True)
class Media:
    """One offered (or the accepted) audio format: ``PCMU`` or ``L16`` at 8 kHz."""

    format: str
    channels: tuple[str, ...]
    rate: int = RATE

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "audio",
            "format": self.format,
            "channels": list(self.channels),
            "rate": self.rate,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One client message, checked: its type, counters, position and parameters."""

    type: str
    seq: int
    serverseq: int
    position_s: float
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Open:
    """What an ``open`` says about the conversation, and the format chosen from its offer."""

    organization_id: str
    conversation_id: str
    participant: dict[str, str]
    media: Media | None  # None: nothing offered (a probe)
    language: str | None
    custom_config: dict[str, Any]
    continued: bool  # ``continuedSessions``: the session continues an earlier one

    @property
    def probe(self) -> bool:
        """Genesys checks a connection with the null conversation id: no call behind it."""
        return self.conversation_id == NULL_UUID

    def metadata(self) -> dict[str, object]:
        return {
            "organizationId": self.organization_id,
            "conversationId": self.conversation_id,
            "participant": self.participant,
            "language": self.language,
            "customConfig": self.custom_config,
            "continued": self.continued,
        }


def _offer(entry: object) -> Media | None:
    """One entry of ``media``: a format the bridge takes, or None (skipped)."""
    if not isinstance(entry, dict) or entry.get("type") != "audio":
        return None
    fmt, rate, channels = entry.get("format"), entry.get("rate"), entry.get("channels")
    if fmt not in FORMATS or type(rate) is not int or rate != RATE:
        return None
    if not isinstance(channels, list) or not 1 <= len(channels) <= 2:
        return None
    if any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
        return None
    return Media(str(fmt), tuple(channels), rate)


def choose_media(offered: object) -> Media | None:
    """The one format to accept: both parties before one, PCMU before L16 (PCMU is what
    Genesys carries; L16 doubles the bytes for the same audio), the offer's order otherwise.

    Returns None when nothing was offered (a probe).  Raises :class:`RemoteProtocolError`
    when ``media`` is not a list, or nothing in it is a format the bridge takes.
    """
    if not isinstance(offered, list):
        raise RemoteProtocolError("open: parameters.media must be a list of formats")
    if not offered:
        return None
    taken = [media for media in map(_offer, offered[:16]) if media is not None]
    if not taken:
        raise RemoteProtocolError(
            "open: no offered media format the bridge takes (audio PCMU or L16 at 8000 Hz, "
            "channels external and/or internal)"
        )
    return max(taken, key=lambda m: (len(m.channels), m.format == "PCMU"))


def _text(params: dict[str, Any], key: str, *, what: str, limit: int = 256) -> str:
    value = params.get(key, "")
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise RemoteProtocolError(f"{what}.{key}: expected text of at most {limit} characters")
    return value


def read_open(params: dict[str, Any]) -> Open:
    """The ``open`` parameters (``OpenParameters`` in the reference's message.ts)."""
    ids = {}
    for key in ("organizationId", "conversationId"):
        value = params.get(key)
        if not isinstance(value, str) or not UUID_RE.fullmatch(value):
            raise RemoteProtocolError(f"open: parameters.{key} must be a UUID")
        ids[key] = value.lower()
    participant = params.get("participant", {})
    if not isinstance(participant, dict):
        raise RemoteProtocolError("open: parameters.participant must be an object")
    who = {k: _text(participant, k, what="participant") for k in ("id", "ani", "aniName", "dnis")}
    language = params.get("language")
    if language is not None:
        language = _text(params, "language", what="open", limit=16)
    custom = params.get("customConfig", {})
    if not isinstance(custom, dict) or len(json.dumps(custom)) > 16_384:
        raise RemoteProtocolError("open: parameters.customConfig must be an object (<= 16 KiB)")
    continued = params.get("continuedSessions")
    return Open(
        organization_id=ids["organizationId"],
        conversation_id=ids["conversationId"],
        participant=who,
        media=choose_media(params.get("media")),
        language=language,
        custom_config=custom,
        continued=isinstance(continued, list) and bool(continued),
    )


def _uint(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if type(value) is not int or not 0 <= value < 2**53:  # bool is not a sequence number
        raise RemoteProtocolError(f"{key}: must be a non-negative integer")
    return value


@dataclass(slots=True)
class Session:
    """The server's side of one AudioHook session: checks each client message in order and
    numbers the replies (``seq`` its own, ``clientseq`` the last client ``seq`` taken).

    ``state``: ``new`` (waiting for ``open``), ``open``, ``paused``, ``closed`` (``close``
    answered), ``failed`` (the bridge sent ``disconnect``: it waits for the client's ``close``).
    """

    id: str | None = None
    seq: int = 0
    clientseq: int = 0
    state: str = "new"
    media: Media | None = None

    def receive(self, text: str) -> Message:
        """One text message, checked as the reference server checks it (``onTextMessage``)."""
        if len(text) > MAX_TEXT:
            raise RemoteProtocolError(f"text message of {len(text)} characters (at most 64K)")
        try:
            message = json.loads(text)
        except ValueError:
            raise RemoteProtocolError("text message is not valid JSON") from None
        if not isinstance(message, dict):
            raise RemoteProtocolError("text message is not a JSON object")
        if message.get("version") != VERSION:
            raise RemoteProtocolError(f"version {message.get('version')!r:.12}: expected '2'")
        kind = message.get("type")
        if not isinstance(kind, str):
            raise RemoteProtocolError("type: must be a string")
        session_id = message.get("id")
        if not isinstance(session_id, str) or not UUID_RE.fullmatch(session_id):
            raise RemoteProtocolError("id: must be the session UUID")
        seq, serverseq = _uint(message, "seq"), _uint(message, "serverseq")
        position = parse_duration(message.get("position"), what="position")
        params = message.get("parameters")
        if not isinstance(params, dict):
            raise RemoteProtocolError("parameters: must be an object")
        if seq != self.clientseq + 1:
            raise RemoteProtocolError(f"seq {seq} after {self.clientseq}: must increase by one")
        if serverseq > self.seq:
            raise RemoteProtocolError(f"serverseq {serverseq} is above the server's {self.seq}")
        if self.id is None:
            self.id = session_id
        elif session_id != self.id:
            raise RemoteProtocolError("id: not this session's")
        self.clientseq = seq
        if kind not in CLIENT_TYPES:
            raise RemoteProtocolError(f"{kind[:40]!r} is not a client message type")
        if kind == "open" and self.state != "new":
            raise RemoteProtocolError("a second open in one session")
        if kind not in ("open", "close", "error", "ping") and self.state == "new":
            raise RemoteProtocolError(f"{kind} before open")
        return Message(kind, seq, serverseq, position, params)

    def check_audio(self, payload: bytes) -> None:
        """Binary messages are audio only while the session is open (paused: Genesys sends
        none; the reference server refuses audio in any state but ACTIVE)."""
        if self.state != "open":
            raise RemoteProtocolError(f"audio while the session is {self.state}")
        if self.media is None:
            raise RemoteProtocolError("audio in a session that took no media (a probe)")
        width = (1 if self.media.format == "PCMU" else 2) * len(self.media.channels)
        if len(payload) % width:
            raise RemoteProtocolError(
                f"{len(payload)} bytes of audio are not whole {len(self.media.channels)}-channel "
                f"{self.media.format} samples ({width} bytes each)"
            )

    def reply(self, kind: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """A server message, numbered (``buildAndSendMessage`` in the reference server)."""
        self.seq += 1
        return {
            "version": VERSION,
            "type": kind,
            "id": self.id or NULL_UUID,
            "seq": self.seq,
            "clientseq": self.clientseq,
            "parameters": parameters or {},
        }

    def opened(self, media: Media | None) -> dict[str, Any]:
        """``opened`` with the one accepted format (none for a probe); audio may come now."""
        self.media = media
        self.state = "open"
        return self.reply(
            "opened", {"media": [media.as_json()] if media else [], "startPaused": False}
        )

    def closed(self) -> dict[str, Any]:
        self.state = "closed"
        return self.reply("closed")

    def disconnect(self, reason: str, info: str) -> dict[str, Any]:
        """``disconnect`` (``completed``, ``unauthorized`` or ``error``): the client answers
        with a close transaction."""
        self.state = "failed"
        return self.reply("disconnect", {"reason": reason, "info": info[:200]})
