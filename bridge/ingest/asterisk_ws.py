"""Asterisk ``chan_websocket`` on the media-fork listener (/asterisk, /asterisk/<anything>).

docs/media-forks.md §2.  A WebSocket channel connects out to the bridge; its first text message
is ``MEDIA_START`` (:mod:`bridge.core.forks.asterisk_ws`), then binary frames carry the channel's
audio in the announced format and text frames carry events: ``DTMF_END`` is stored as a digit on
the leg, ``ERROR`` as an ``asterisk.error`` call event, the playback notifications are ignored and
an event this reader does not know is kept as an ``asterisk.event`` call event (newer releases add
events).  One channel per connection: the two directions of a call are two connections with one
call key (``v(call=...)`` or ``BRIDGE_CALL``) and their roles (``v(role=...)`` / ``BRIDGE_ROLE``,
else the first is the caller and the second the callee).

A close frame from Asterisk is its hangup; a connection that drops without one is
``disconnected`` (the call waits ``rejoin_s``).  Refusals close with a reason: 1003 for a format
the bridge does not decode, 1009 for a message over chan_websocket's 65,500 bytes, 1008 for
anything else the protocol does not allow (audio before MEDIA_START, a second MEDIA_START, text
that is no control message), 1013 when ASR capacity is full.
"""

from __future__ import annotations

import json

from websockets.asyncio.server import ServerConnection

from bridge.core.forks.asterisk_ws import (
    MAX_MESSAGE,
    PLAYBACK_EVENTS,
    MediaStart,
    UnsupportedFormat,
    pairing,
    read_control,
    read_dtmf,
    read_media_start,
)
from bridge.core.types import LegSource
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkFormat, ForkStream
from bridge.ingest.wsfork import WebSocketFork, close_code, ending, first_message

UNSUPPORTED_DATA = 1003  # RFC 6455 §7.4.1: "a type of data it cannot accept"
MESSAGE_TOO_BIG = 1009
MAX_EVENT_TEXT = 1024


class TooBig(RemoteProtocolError):
    """A message over chan_websocket's limit: closed with 1009."""


def metadata(start: MediaStart, key: str, peer: str) -> dict[str, object]:
    """The ``asterisk.start`` call event: what MEDIA_START said and where it came from."""
    return {
        **start.extra,
        "call": key,
        "connection_id": start.connection_id,
        "channel": start.channel,
        "channel_id": start.channel_id,
        "format": start.format,
        "optimal_frame_size": start.optimal_frame_size,
        "ptime": start.ptime_ms,
        "control_message_format": "json" if start.json else "plain-text",
        "channel_variables": start.channel_variables,
        "peer": peer,
    }


def asterisk_close_code(exc: RemoteProtocolError) -> int:
    """1003 for a format the bridge does not take, 1009 for a message over chan_websocket's
    limit, else the forks' own codes."""
    if isinstance(exc, UnsupportedFormat):
        return UNSUPPORTED_DATA
    if isinstance(exc, TooBig):
        return MESSAGE_TOO_BIG
    return close_code(exc)


class AsteriskWebSocketFork(WebSocketFork):
    name = "asterisk"
    subprotocols: tuple[str, ...] = ()  # websocket_client.conf ``protocols`` is optional

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        peer = f"{ws.remote_address[0]}:{ws.remote_address[1]}" if ws.remote_address else "?"
        async with ending(ws, f"Asterisk stream from {peer}", code_of=asterisk_close_code) as end:
            first = await first_message(ws)
            if isinstance(first, bytes):
                raise RemoteProtocolError("audio before MEDIA_START")
            start = read_media_start(first, default_format=query.get("format") or None)
            pair = pairing(start, query)
            where = f"Asterisk {start.channel or pair.key}"
            end.stream = stream = await calls.join(
                LegSource.ASTERISK,
                pair.key,
                ForkFormat(start.rate_hz, start.encoding),
                roles=None if pair.role is None else (pair.role,),
                title=f"Asterisk {pair.key}",
            )
            role = stream.legs[0].info.role.value
            # One event per connection (ForkCalls records only the first): each direction's
            # channel has its own name, uniqueid and variables.
            about = metadata(start, pair.key, peer) | {"role": role}
            stream.call.event("asterisk.start", json.dumps(about, ensure_ascii=False))
            stream.call.log.info("%s streams %s as the %s leg", where, start.format, role)
            async for message in ws:
                if len(message) > MAX_MESSAGE:
                    raise TooBig(
                        f"a message of {len(message)} bytes (chan_websocket's limit 65500)"
                    )
                if isinstance(message, bytes):
                    stream.feed(message)
                else:
                    self._control(stream, message)

    def _control(self, stream: ForkStream, text: str) -> None:
        control = read_control(text)
        if control.event == "DTMF_END":
            stream.dtmf(read_dtmf(control))
        elif control.event == "MEDIA_START":
            raise RemoteProtocolError("a second MEDIA_START")
        elif control.event == "ERROR":
            detail = json.dumps(control.fields, ensure_ascii=False)
            stream.call.event("asterisk.error", detail[:MAX_EVENT_TEXT])
        elif control.event not in PLAYBACK_EVENTS:
            stream.call.event("asterisk.event", text[:MAX_EVENT_TEXT])
