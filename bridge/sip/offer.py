"""The SDP offer of an incoming INVITE and the codec the bridge will answer with (sans-I/O).

pjsua negotiates the media itself, and with the wheel's codecs limited to the configured ones it
refuses an offer it cannot parse (400 "Bad SDP") or match (488) before the application sees the
INVITE (those refusals reach the log through the worker's pjsua log writer, without the Call-ID).
What gets through is checked again here, so any refusal of ours carries a clear status and
reason (RFC 3261 §21.4.26 488 Not Acceptable Here, §21.4.1 400 Bad Request) and is logged with
the Call-ID, and the accepted codec is logged.
"""

from __future__ import annotations

import re

from bridge.core.sdp import (
    DIRECTIONS,
    MediaSection,
    PayloadFormat,
    SdpError,
    SessionDescription,
)
from bridge.core.sdp import parse_sdp as parse_session
from bridge.errors import RemoteProtocolError

__all__ = [
    "MAX_MEDIA",
    "MediaOffer",
    "PayloadFormat",
    "SdpOffer",
    "choose_codec",
    "join_sdp",
    "parse_sdp",
    "receive_on",
    "sdp_blocks",
    "sdp_body",
]

# pjmedia keeps at most this many m-lines of an SDP (PJMEDIA_MAX_SDP_MEDIA) and drops the rest,
# which would shift every media index after it; such an offer is refused instead.
MAX_MEDIA = 16

# The SIP side's names for the one SDP reader's types (bridge/core/sdp.py).
SdpOffer = SessionDescription
MediaOffer = MediaSection


def bad_sdp(what: str) -> RemoteProtocolError:
    return SdpError(what)


def parse_sdp(text: str, *, require_connection: bool = True) -> SdpOffer:
    """The media of an SDP offer in an INVITE (RFC 8866, :func:`bridge.core.sdp.parse_sdp`).

    ``require_connection=False`` accepts an SDP without any c= line: some SIPREC clients send
    one (tests/sip/corpus/siprec/connectel-offer.txt), and the SIPREC parser reads only labels
    and directions from it.  pjsua, which sets up the media, still needs one (pjmedia's
    ``pjmedia_stream_info_from_sdp`` fails with ``PJMEDIA_SDP_EMISSINGCONN``).

    Raises:
        RemoteProtocolError: ``status_hint=400``, naming the first thing that is wrong
            (488 for more than :data:`MAX_MEDIA` streams).
    """
    offer = parse_session(text, max_media=MAX_MEDIA)
    session = any(line.startswith("c=") for line in offer.lines)
    if require_connection and not session and not any(m.connection for m in offer.media):
        raise bad_sdp("no c= line (RFC 8866 §5.7)")
    return offer


def choose_codec(offer: SdpOffer, allowed: tuple[str, ...]) -> str:
    """The first codec of the first audio stream that the bridge allows, in the offer's order.

    pjmedia answers in the offerer's order too (``PJMEDIA_SDP_NEG_PREFER_REMOTE_CODEC_ORDER``).

    Raises:
        RemoteProtocolError: ``status_hint=488`` when nothing offered can be taken.
    """
    audio = offer.audio
    if not audio:
        raise RemoteProtocolError("the offer has no audio stream", status_hint=488)
    offered = [f.encoding for f in audio[0].formats]
    for name in offered:
        if name in allowed:
            return name
    shown = ", ".join(n for n in offered if n != "TELEPHONE-EVENT") or "nothing"
    raise RemoteProtocolError(
        f"no acceptable codec: offered {shown}; the bridge takes {', '.join(allowed)}",
        status_hint=488,
    )


def sdp_body(whole_msg: str) -> str | None:
    """The body of a raw SIP message when it is ``application/sdp``; ``None`` without a body."""
    parts = re.split(r"\r?\n\r?\n", whole_msg, maxsplit=1)
    if len(parts) < 2 or not parts[1].strip():
        return None
    head, body = parts
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-type", "c"):
            if value.split(";")[0].strip().lower() != "application/sdp":
                raise RemoteProtocolError(
                    f"unsupported body {value.strip()!r}: expected application/sdp",
                    status_hint=415,
                )
    return body


def sdp_blocks(sdp: str) -> list[list[str]]:
    """The lines of an SDP (no empty ones): the session block, then one block per m= line
    (RFC 8866 §5), so block ``i + 1`` is media index ``i``."""
    blocks: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            blocks.append([])
        if line:
            blocks[-1].append(line)
    return blocks


def join_sdp(blocks: list[list[str]], eol: str = "\r\n") -> str:
    return eol.join(line for block in blocks for line in block) + eol


def receive_on(sdp: str, ports: dict[int, int], *, recvonly: bool = False) -> str:
    """Our SDP with the audio m-lines of ``ports`` (m-line index -> RTP port) moved there.

    RFC 8866 §5.14: the m= port is where the media is to be sent; RFC 3605: ``a=rtcp`` names
    the RTCP port, which follows as the next odd one (RFC 3550 §11).  ``recvonly``: those
    streams are also answered ``a=recvonly`` (RFC 3264 §6.1: an answerer may narrow sendrecv),
    so the bridge sends no RTP that a latching SBC could follow back to pjsua's port; a
    stream already answered sendonly or inactive keeps its direction.
    """
    blocks = sdp_blocks(sdp)
    for index, block in enumerate(blocks[1:]):
        port = ports.get(index)
        head = block[0].split(" ", 2)
        if port is None or head[0] != "m=audio" or len(head) < 3 or head[1] == "0":
            continue
        block[0] = f"m=audio {port} {head[2]}"
        directed = False
        for n, line in enumerate(block):
            if line.startswith("a=rtcp:"):
                rest = line[7:].split(" ", 1)[1:]
                block[n] = " ".join([f"a=rtcp:{port + 1}", *rest])
            elif line.startswith("a=") and line[2:] in DIRECTIONS:
                directed = True
                if recvonly and line == "a=sendrecv":
                    block[n] = "a=recvonly"
        if recvonly and not directed:
            block.append("a=recvonly")
    return join_sdp(blocks)
