"""Twilio Media Streams on the media-fork listener (/twilio).

docs/media-forks.md §4.2.  ``<Start><Stream track="both_tracks">`` (or ``<Connect><Stream>``)
opens a WebSocket here; its messages are read by :mod:`bridge.core.forks.twilio`.  Each track of
the stream is a leg of the call keyed by its ``callSid`` — ``inbound`` (what Twilio receives from
the party on the call leg) the ``caller``, ``outbound`` (what Twilio sends to that party) the
``callee``, unless a ``roles`` custom parameter names them — so two streams of one call (one per
track) are one call too.  ``media.timestamp`` places every payload on its leg: audio Twilio
discarded under congestion becomes silence and later words keep their times.  ``start``'s ids and
``customParameters`` are the ``twilio.start`` call event; ``dtmf`` is a digit on the leg.
``stop`` ends the stream ``hangup``; a connection that drops without one ``disconnected`` (the
call waits ``rejoin_s``).  A broken stream is closed 1008/1007 with the reason.

Authentication: with ``twilio_auth_token`` set the upgrade must carry ``X-Twilio-Signature``
for ``public_url`` + the path (what Twilio dialled before any proxy), else 403; without it the
path takes the listener's shared secret like every other.
"""

from __future__ import annotations

import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from bridge.config.ingest import ForkSocketConfig
from bridge.core.forks.twilio import (
    RATE_HZ,
    Dtmf,
    Media,
    Start,
    Stop,
    StreamReader,
    roles_of,
    signature_matches,
)
from bridge.core.types import AudioEncoding, EndCause, LegSource
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkFormat
from bridge.ingest.wsfork import (
    WebSocketFork,
    ending,
    first_message,
    secret_refusal,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio streams in real time: a timestamp further ahead of the time since ``start`` came is
# not audio but a broken (or hostile) stream that would make the bridge fill hours of silence.
AHEAD_S = 2.0


class TwilioFork(WebSocketFork):
    name = "twilio"
    subprotocols: tuple[str, ...] = ()  # Twilio names none
    refusal_status = HTTPStatus.FORBIDDEN  # what Twilio's docs answer a bad signature with

    def authorize(self, request: Request, config: ForkSocketConfig) -> str | None:
        """Why the upgrade is refused (``None``: it is Twilio's, or it has the shared secret)."""
        token = config.twilio_auth_token
        if token is None:
            return secret_refusal(request, config.secret)
        signatures = request.headers.get_all(SIGNATURE_HEADER)
        if len(signatures) != 1 or not signatures[0]:
            return f"no {SIGNATURE_HEADER} (or several): only Twilio may open /twilio"
        signature = signatures[0]
        hosts = request.headers.get_all("Host")
        base = config.public_url or f"wss://{hosts[0] if len(hosts) == 1 else ''}"
        url = base + request.path
        if not signature_matches(token, url, signature):
            return (
                f"{SIGNATURE_HEADER} does not sign {url[:200]} with BRIDGE_TWILIO_AUTH_TOKEN "
                "(set BRIDGE_FORKS_PUBLIC_URL to the base of the <Stream url> Twilio dials)"
            )
        return None

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        reader = StreamReader()
        peer = f"{ws.remote_address[0]}:{ws.remote_address[1]}" if ws.remote_address else "?"
        async with ending(ws, f"Twilio stream from {peer}") as end:
            reader.read(await first_message(ws))  # connected
            start = reader.read(await first_message(ws))
            if not isinstance(start, Start):  # the reader refuses anything else already
                raise RemoteProtocolError("the second message must be start")
            end.what = f"Twilio call {start.call_sid} stream {start.stream_sid} from {peer}"
            started = time.monotonic()
            end.stream = stream = await calls.join(
                LegSource.TWILIO,
                start.call_sid,
                ForkFormat(RATE_HZ, AudioEncoding.PCMU, len(start.tracks)),
                roles=roles_of(start, start.parameters),
                title=f"Twilio {start.call_sid}",
                metadata={**start.metadata(), "peer": peer},
            )
            async for message in ws:
                event = reader.read(message)
                if isinstance(event, Media):
                    ahead = event.timestamp_ms / 1000 - (time.monotonic() - started)
                    if ahead > AHEAD_S:
                        raise RemoteProtocolError(
                            f"media: timestamp {event.timestamp_ms} ms is {ahead:.1f} s ahead of "
                            "the stream's real time"
                        )
                    channel = start.tracks.index(event.track)
                    stream.feed_at(event.payload, event.position, channel=channel)
                elif isinstance(event, Dtmf):
                    heard = event.track if event.track in start.tracks else start.tracks[0]
                    stream.dtmf(event.digit, channel=start.tracks.index(heard))
                elif isinstance(event, Stop):
                    end.cause = EndCause.HANGUP
                    await ws.close(1000, "stopped")
                    break
                # mark: the answer to a mark the bridge never sends; nothing to do
