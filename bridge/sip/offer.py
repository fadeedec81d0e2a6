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
from dataclasses import dataclass

from bridge.core.numbers import BadNumber, parse_uint
from bridge.errors import RemoteProtocolError

# RFC 3551 §6 static audio payload types (name, RTP clock).  G.722's RTP clock is 8000 although
# it samples at 16 kHz (RFC 3551 §4.5.2).
STATIC_PAYLOADS: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    payload_type: int
    encoding: str  # upper case, e.g. "PCMU", "TELEPHONE-EVENT"
    rtp_clock_hz: int


# pjmedia keeps at most this many m-lines of an SDP (PJMEDIA_MAX_SDP_MEDIA) and drops the rest,
# which would shift every media index after it; such an offer is refused instead.
MAX_MEDIA = 16
PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}", re.ASCII)  # RFC 3551 §6: 0..127 in <fmt>
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# RFC 8866 §6.7: the media direction attributes; sendrecv when neither level names one.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class MediaOffer:
    kind: str  # "audio", "video", ...
    port: int
    protocol: str  # "RTP/AVP", ...
    formats: tuple[PayloadFormat, ...]
    label: str | None = None  # RFC 4574 a=label (SIPREC ties metadata to it: RFC 7866 §7.1.1)
    direction: str = "sendrecv"  # one of DIRECTIONS, session-level a= applied (RFC 8866 §6.7)


@dataclass(frozen=True, slots=True)
class SdpOffer:
    media: tuple[MediaOffer, ...]

    @property
    def audio(self) -> tuple[MediaOffer, ...]:
        return tuple(m for m in self.media if m.kind == "audio" and m.port != 0)


def bad_sdp(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed SDP: {what}", status_hint=400)


def parse_sdp(text: str, *, require_connection: bool = True) -> SdpOffer:
    """The media lines of an SDP body (RFC 8866 §5).

    ``require_connection=False`` accepts an SDP without any c= line: some SIPREC clients send
    one (tests/sip/corpus/siprec/connectel-offer.txt), and the SIPREC parser reads only labels
    and directions from it.  pjsua, which sets up the media, still needs one (pjmedia's
    ``pjmedia_stream_info_from_sdp`` fails with ``PJMEDIA_SDP_EMISSINGCONN``).

    Raises:
        RemoteProtocolError: ``status_hint=400``, naming the first thing that is wrong.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise bad_sdp("must start with v=0 (RFC 8866 §5.1)")
    media: list[tuple[str, int, str, list[int], dict[int, tuple[str, int]]]] = []
    labels: list[str | None] = []
    directions: list[str | None] = []
    session_direction = "sendrecv"
    for n, line in enumerate(lines, 1):
        if CONTROL.search(line):
            # RFC 8866 §9: byte-string excludes NUL, CR and LF; pjmedia would copy a NUL into
            # its answer and then abort on it (pjsip_inv_verify_request3 "Invalid local SDP").
            raise bad_sdp(f"line {n} has a control character")
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise bad_sdp(f"line {n} {line[:40]!r} is not <type>=<value>")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise bad_sdp(f"line {n} m={value[:40]!r}: expected m=<media> <port> <proto> <fmt>")
            if len(media) == MAX_MEDIA:
                raise RemoteProtocolError(
                    f"more than {MAX_MEDIA} media streams offered", status_hint=488
                )
            shape = f"line {n} m={value[:40]!r}: expected m=<media> <port> <proto> <fmt>"
            port = _number(parts[1].split("/")[0], f"{shape}; the port", 65535)
            rtp = parts[2].startswith("RTP/")
            pts = [int(p) for p in parts[3:] if PAYLOAD_TYPE.fullmatch(p)] if rtp else []
            media.append((parts[0], port, parts[2], pts, {}))
            labels.append(None)
            directions.append(None)
        elif kind == "c":
            if len(value.split()) != 3:
                raise bad_sdp(f"line {n} c={value[:40]!r}: expected c=IN IP4 <address>")
        elif kind == "a" and value.startswith("rtpmap:") and media:
            head, _, codec = value[7:].partition(" ")
            name, _, rate = codec.partition("/")
            shape = f"line {n} a={value[:40]!r}: expected a=rtpmap:<pt> <name>/<rate>"
            pt = _number(head, f"{shape}; the payload type", 127)
            media[-1][4][pt] = (name.upper(), _number(rate.split("/")[0], f"{shape}; the rate"))
        elif kind == "a" and value.startswith("label:") and media:
            labels[-1] = value[6:].strip() or None
        elif kind == "a" and value in DIRECTIONS:
            if media:
                directions[-1] = value
            else:
                session_direction = value
    if not media:
        raise bad_sdp("no m= line")
    offers = []
    for (kind, port, proto, pts, rtpmap), label, direction in zip(
        media, labels, directions, strict=True
    ):
        formats = []
        for pt in pts:
            if pt in rtpmap:
                formats.append(PayloadFormat(pt, *rtpmap[pt]))
            elif pt in STATIC_PAYLOADS:
                formats.append(PayloadFormat(pt, *STATIC_PAYLOADS[pt]))
        offers.append(
            MediaOffer(kind, port, proto, tuple(formats), label, direction or session_direction)
        )
    if require_connection and not any(line.startswith("c=") for line in lines):
        raise bad_sdp("no c= line (RFC 8866 §5.7)")
    return SdpOffer(tuple(offers))


def _number(text: str, what: str, maximum: int = 10_000_000) -> int:
    """An SDP number by ASCII rules (``²`` or 5,000 digits are a 400, not a crash)."""
    try:
        return parse_uint(text, what=what, max_digits=len(str(maximum)), maximum=maximum)
    except BadNumber as exc:
        raise bad_sdp(str(exc)) from None


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
