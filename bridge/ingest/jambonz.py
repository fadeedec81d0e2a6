"""jambonz on the media-fork listener: the ``listen`` verb (/jambonz) and the custom speech
API (/jambonz-stt).

docs/media-forks.md §4.1; the messages are read in :mod:`bridge.core.forks.jambonz`.

* ``/jambonz``: the listen verb's stream (subprotocol ``audio.jambonz.org``).  The first text
  frame names the call (``callSid``), rate and mix and is stored whole as the ``jambonz.start``
  call event; ``stereo`` is two legs (caller left, callee right).  With
  ``BRIDGE_JAMBONZ_USERNAME``/``_PASSWORD`` set the handshake needs that HTTP Basic auth (the
  verb's ``wsAuth``), otherwise the shared secret.  The bridge sends nothing back ("the remote
  side is not expected to send any data back").  A close from jambonz ends the stream
  ``hangup``; a drop ``disconnected`` (a reconnect with the same callSid continues its legs).
* ``/jambonz-stt``: the bridge as a jambonz custom speech vendor (``Authorization: Bearer
  <apiKey>``, the shared secret).  ``start``, LINEAR16 audio, ``stop``; every final segment
  (and, with ``interimResults``, every revision) goes back as a ``transcription`` message; on
  ``stop`` the leg is finished, its last text sent, and the bridge closes the socket.  Errors
  go back as ``{"type": "error"}`` before the close.
"""

from __future__ import annotations

import hmac
import uuid

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from bridge.config.ingest import ForkSocketConfig
from bridge.core.forks.jambonz import (
    LISTEN_SUBPROTOCOL,
    SttOther,
    SttStart,
    SttStop,
    basic_credentials,
    read_listen_dtmf,
    read_listen_start,
    read_stt_control,
    stt_error,
    stt_role,
    transcription,
)
from bridge.core.types import AudioEncoding, EndCause, Gap, LegInfo, LegSource, Segment
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkFormat, ForkStream, Tap
from bridge.ingest.wsfork import (
    Replies,
    WebSocketFork,
    ending,
    first_message,
    secret_refusal,
)

MAX_EVENT_TEXT = 4096


def _peer(ws: ServerConnection) -> str:
    return f"{ws.remote_address[0]}:{ws.remote_address[1]}" if ws.remote_address else "?"


class JambonzListenFork(WebSocketFork):
    """``/jambonz``: the listen verb's audio stream."""

    name = "jambonz"
    subprotocols: tuple[str, ...] = (LISTEN_SUBPROTOCOL,)
    challenge = 'Basic realm="bridge media forks", charset="UTF-8"'

    def authorize(self, request: Request, config: ForkSocketConfig) -> str | None:
        """HTTP Basic auth when the bridge has jambonz credentials, else the shared secret."""
        user, password = config.jambonz_username, config.jambonz_password
        if not (user and password):
            return secret_refusal(request, config.secret)
        given = basic_credentials(request.headers.get("Authorization")) or ("", "")
        same_user = hmac.compare_digest(given[0].encode(), user.encode())
        if hmac.compare_digest(given[1].encode(), password.encode()) and same_user:
            return None
        return (
            "the listen verb needs wsAuth: the username and password of "
            "BRIDGE_JAMBONZ_USERNAME and BRIDGE_JAMBONZ_PASSWORD"
        )

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        peer = _peer(ws)
        async with ending(ws, f"jambonz listen stream from {peer}") as end:
            first = await first_message(ws)
            if not isinstance(first, str):
                raise RemoteProtocolError(
                    "audio before the start: jambonz sends the call's attributes first"
                )
            start = read_listen_start(first, query)
            key = start.call_sid or uuid.uuid4().hex
            end.stream = stream = await calls.join(
                LegSource.JAMBONZ,
                key,
                ForkFormat(start.rate_hz, AudioEncoding.PCM16, len(start.roles)),
                roles=start.roles,
                title=start.title,
                metadata={"api": "listen", "peer": peer, **start.attributes},
            )
            async for message in ws:
                if isinstance(message, bytes):
                    stream.feed(message)
                    continue
                digit = read_listen_dtmf(message)
                if digit is not None:  # the verb's passDtmf
                    stream.dtmf(digit)
                else:
                    stream.call.log.warning("jambonz sent text after the start; kept as an event")
                    stream.call.event("jambonz.text", message[:MAX_EVENT_TEXT])


class JambonzSttFork(WebSocketFork):
    """``/jambonz-stt``: the bridge as a jambonz custom speech-to-text vendor."""

    name = "jambonz-stt"
    subprotocols: tuple[str, ...] = ()

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        replies = Replies(ws)
        peer = _peer(ws)
        what = f"jambonz speech stream from {peer}"
        async with ending(ws, what, replies=replies, answer=stt_error) as end:
            role = stt_role(query)
            first = await first_message(ws)
            if not isinstance(first, str):
                raise RemoteProtocolError("audio before the start message")
            start = read_stt_control(first)
            if not isinstance(start, SttStart):
                raise RemoteProtocolError("the first message must be start")
            key = start.call_sid or uuid.uuid4().hex
            end.stream = stream = await calls.join(
                LegSource.JAMBONZ,
                key,
                ForkFormat(start.rate_hz, AudioEncoding.PCM16, 1),
                roles=(role,),
                title=f"jambonz speech {start.call_sid or start.language or key}",
                metadata={
                    "api": "custom-speech",
                    "peer": peer,
                    "callSid": start.call_sid,
                    "language": start.language,
                    "interimResults": start.interim,
                    "options": start.options,
                },
            )
            calls.tap(stream, self._tap(replies, start))
            async for message in ws:
                if isinstance(message, bytes):
                    stream.feed(message)
                    continue
                control = read_stt_control(message)
                if isinstance(control, SttStart):
                    raise RemoteProtocolError("a second start: one start per connection")
                if isinstance(control, SttOther):
                    stream.call.log.warning("jambonz sent %r; answered error", control.type)
                    replies.put(stt_error(f"unknown message type {control.type!r}"))
                    continue
                assert isinstance(control, SttStop)
                await self._stop(stream, calls, replies)
                await ws.close(1000, "stopped")
                end.cause = EndCause.HANGUP
                break

    @staticmethod
    def _tap(replies: Replies, start: SttStart) -> Tap:
        def tap(leg: LegInfo, item: Segment | Gap) -> None:
            if isinstance(item, Segment) and item.text.strip() and (item.final or start.interim):
                replies.put(transcription(item.text, final=item.final, language=start.language))

        return tap

    @staticmethod
    async def _stop(stream: ForkStream, calls: ForkCalls, replies: Replies) -> None:
        """``stop``: finish the leg while the socket listens, so its last text goes back.  When
        other streams share the call (one callSid), their legs go on: the text is stored."""
        if {id(leg) for leg in stream.call.legs} == {id(leg) for leg in stream.legs}:
            await stream.call.finish(timeout_s=calls.finish_timeout_s)
        await replies.drain()
