"""FreeSWITCH ``mod_audio_stream`` and ``mod_audio_fork`` on the media-fork listener (/freeswitch).

docs/media-forks.md §3.  The URL names the mix, rate and call (:mod:`bridge.core.forks.freeswitch`);
the first text message is the metadata (JSON by convention), then binary L16.  ``stereo`` is
two legs (read side left, write side right).  Every segment of the call goes back on the same
socket as ``{"type": "transcription", "data": {...}}``: mod_audio_stream raises it as a
``mod_audio_stream::json`` event, mod_audio_fork as ``mod_audio_fork::transcription``, so
dialplan and ESL applications get the live text.  Later text messages (``send_text``) are
stored as ``freeswitch.text`` call events.  A close frame from FreeSWITCH (hangup, ``stop``) ends
the stream ``hangup``; a dropped connection ``disconnected`` (the call waits ``rejoin_s``).
"""

from __future__ import annotations

import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection

from bridge.core.forks.freeswitch import read_metadata, read_url
from bridge.core.types import AudioEncoding, LegInfo, LegSource, Segment
from bridge.ingest.fork import ForkCalls, ForkFormat
from bridge.ingest.wsfork import (
    Replies,
    WebSocketFork,
    ending,
    first_message,
)

MAX_EVENT_TEXT = 4096


def transcription(leg: LegInfo, segment: Segment) -> dict[str, Any]:
    """One segment as the text sent back to FreeSWITCH."""
    return {
        "type": "transcription",
        "data": {
            "call_id": leg.call_id,
            "leg_id": leg.leg_id,
            "role": leg.role.value,
            "seq": segment.seq,
            "final": segment.final,
            "start_ms": segment.start_ms,
            "end_ms": segment.end_ms,
            "timing": segment.timing.value,
            "text": segment.text,
        },
    }


class FreeSwitchFork(WebSocketFork):
    name = "freeswitch"
    subprotocols: tuple[str, ...] = ("audio.drachtio.org",)  # mod_audio_fork's only

    async def run(self, ws: ServerConnection, query: dict[str, str], calls: ForkCalls) -> None:
        replies = Replies(ws)
        peer = f"{ws.remote_address[0]}:{ws.remote_address[1]}" if ws.remote_address else "?"
        async with ending(ws, f"FreeSWITCH stream from {peer}", replies=replies) as end:
            url = read_url(query)
            first = await first_message(ws)
            metadata = read_metadata(first) if isinstance(first, str) else {}
            key = url.uuid or str(metadata.get("uuid") or "")[:128] or uuid.uuid4().hex
            end.stream = stream = await calls.join(
                LegSource.FREESWITCH,
                key,
                ForkFormat(url.rate_hz, AudioEncoding.PCM16, len(url.roles)),
                roles=url.roles,
                title=f"FreeSWITCH {key}",
                metadata={"uuid": key, "mix": url.mix, "peer": peer, **metadata},
            )
            calls.tap(stream, replies.segment_tap(transcription))
            if isinstance(first, bytes):
                stream.feed(first)
            async for message in ws:
                if isinstance(message, bytes):
                    stream.feed(message)
                else:
                    stream.call.event("freeswitch.text", message[:MAX_EVENT_TEXT])
