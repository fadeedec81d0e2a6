"""FreeSWITCH mod_audio_stream / mod_audio_fork: what a stream is, from its URL and first message.

docs/media-forks.md §3.  ``uuid_audio_stream <uuid> start <ws-url> <mono|mixed|stereo> <8k|16k>
[metadata]`` opens a WebSocket to ``ws-url``, sends ``metadata`` as the first (text) message
when given, then binary L16 little-endian at the chosen rate: ``mono`` the channel's read side
(the caller, from the channel's point of view), ``mixed`` both parties summed, ``stereo`` the two
interleaved (read side left, write side right).  The modules send nothing that says which mix
or rate they chose, so the stream URL carries it for the bridge, with the call's key::

    ws://bridge:8081/freeswitch?token=SECRET&uuid=${uuid}&mix=stereo&rate=16k

``uuid`` (or ``uuid`` in JSON metadata) names the call: a reconnect with the same uuid continues
its legs.  ``roles`` (``caller,callee`` by default) names the sides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bridge.core.numbers import BadNumber, parse_uint
from bridge.core.types import LegRole, roles_from_text
from bridge.errors import RemoteProtocolError

MIXES: Final = ("mono", "mixed", "stereo")
RATES: Final = {"8k": 8000, "16k": 16000, "8000": 8000, "16000": 16000}
MAX_METADATA: Final = 16_384  # characters of the first text message kept


@dataclass(frozen=True, slots=True)
class StreamUrl:
    """What the stream URL says: the call's key (if given), mix, rate and the sides' roles."""

    uuid: str | None
    mix: str
    rate_hz: int
    roles: tuple[LegRole, ...]  # one per channel: mono/mixed 1, stereo 2


def read_url(query: Mapping[str, str]) -> StreamUrl:
    mix = query.get("mix", "mono")
    if mix not in MIXES:
        raise RemoteProtocolError(f"mix={mix[:20]!r}: expected mono, mixed or stereo")
    rate_text = query.get("rate", "8k")
    rate = RATES.get(rate_text)
    if rate is None:
        try:
            rate = parse_uint(rate_text, what="rate", max_digits=6)
        except BadNumber as exc:
            raise RemoteProtocolError(f"rate: {exc} (8k or 16k)") from None
    if "roles" in query:
        try:
            roles = roles_from_text(query["roles"], example="caller,callee")
        except ValueError as exc:
            raise RemoteProtocolError(f"roles: {exc}") from None
    else:
        roles = (LegRole.SPEAKER,) if mix == "mixed" else (LegRole.CALLER, LegRole.CALLEE)
    channels = 2 if mix == "stereo" else 1
    if len(roles) < channels:
        raise RemoteProtocolError(f"mix={mix} has {channels} channels: name a role for each")
    uuid = query.get("uuid") or None
    if uuid is not None and (len(uuid) > 128 or not uuid.isprintable()):
        raise RemoteProtocolError("uuid: at most 128 printable characters")
    return StreamUrl(uuid, mix, rate, roles[:channels])


def read_metadata(text: str) -> dict[str, object]:
    """The first text message: a JSON object by convention, otherwise kept as ``{"text": ...}``."""
    text = text[:MAX_METADATA]
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"text": text}
