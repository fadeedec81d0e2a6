"""The one SDP reader (RFC 8866), sans-I/O: text in, sections out.

Both ways audio comes with an SDP offer read it here: a SIP INVITE (``bridge/sip/offer.py``,
what pjsua will negotiate) and a WHIP POST (``bridge/webrtc/offer.py``, what aiortc will).  Each
then decides what *it* needs from the sections; what every offer must be is checked once:

* it starts with ``v=0`` (RFC 8866 §5.1) and every line is ``<type>=<value>`` (§5) without
  control characters (§9: byte-string excludes NUL, CR and LF);
* every ``m=`` line is ``m=<media> <port>[/<count>] <proto> <fmt> ...`` (§5.14) with ASCII
  numbers; every ``a=rtpmap`` is ``<pt> <name>/<rate>[/<params>]`` (§6.6);
* every address (``c=``, §5.7; ``a=rtcp``, RFC 3605) is an IP literal of its address type:
  media goes to and is latched from an address, and a host name would be looked up on a media
  thread (pjlib also asserts on one of 254 bytes or more: docs/pjsua2.md P14);
* at most ``max_media`` m-lines (pjmedia keeps 16 and drops the rest silently).

Errors are :class:`SdpError` (``status_hint`` 400; 488 for too many streams or a host name),
naming the line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from bridge.core.numbers import BadNumber, parse_uint
from bridge.errors import RemoteProtocolError

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOADS",
    "MediaSection",
    "PayloadFormat",
    "SdpError",
    "SessionDescription",
    "parse_sdp",
]

# RFC 3551 §6 static audio payload types (name, RTP clock).  G.722's RTP clock is 8000 although
# it samples at 16 kHz (RFC 3551 §4.5.2).
STATIC_PAYLOADS: Final[dict[int, tuple[str, int]]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
# RFC 8866 §6.7: the media direction attributes; sendrecv when neither level names one.
DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PAYLOAD_TYPE: Final = re.compile(r"[0-9]{1,3}", re.ASCII)  # RFC 3551 §6: 0..127 in <fmt>


class SdpError(RemoteProtocolError):
    """An SDP that is not one (400), or one with more streams than can be answered (488)."""

    def __init__(self, message: str, status: int = 400) -> None:
        text = f"malformed SDP: {message}" if status == 400 else message
        super().__init__(text, status_hint=status)


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    payload_type: int
    encoding: str  # upper case, e.g. "PCMU", "TELEPHONE-EVENT", "OPUS"
    rtp_clock_hz: int
    parameters: str = ""  # what follows the rate in a=rtpmap, e.g. "2" (channels)

    @property
    def codec(self) -> str:
        """``opus/48000/2``, ``pcmu/8000``: lower case, as WebRTC stacks name them."""
        tail = f"/{self.parameters}" if self.parameters else ""
        return f"{self.encoding.lower()}/{self.rtp_clock_hz}{tail}"


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One ``m=`` section: its line's fields, its attribute lines, and what they say."""

    index: int  # position among all m= sections (the media index pjsua uses)
    kind: str  # "audio", "video", ...
    port: int
    protocol: str  # "RTP/AVP", "UDP/TLS/RTP/SAVPF", ...
    formats: tuple[PayloadFormat, ...]  # the RTP payload types the m= line lists, resolved
    lines: tuple[str, ...]  # every line after the m= line, up to the next one
    direction: str  # one of DIRECTIONS, session-level a= applied (RFC 8866 §6.7)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>:<value>`` (or ``""`` for a flag ``a=<name>``)."""
        return _attribute(self.lines, name)

    @property
    def label(self) -> str | None:  # RFC 4574 a=label (SIPREC: RFC 7866 §7.1.1)
        return self.attribute("label") or None

    @property
    def mid(self) -> str | None:  # RFC 8843 a=mid
        return self.attribute("mid") or None

    @property
    def connection(self) -> bool:
        return any(line.startswith("c=") for line in self.lines)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    lines: tuple[str, ...]  # the session-level lines (before the first m=)
    media: tuple[MediaSection, ...]

    def attribute(self, name: str) -> str | None:
        return _attribute(self.lines, name)

    @property
    def audio(self) -> tuple[MediaSection, ...]:
        """The audio sections that are not refused (port 0)."""
        return tuple(m for m in self.media if m.kind == "audio" and m.port != 0)

    @property
    def connection(self) -> bool:
        """A c= line at session level or in every section (RFC 8866 §5.7)."""
        session = any(line.startswith("c=") for line in self.lines)
        return session or all(m.connection for m in self.media)


def parse_sdp(text: str, *, max_media: int = 16) -> SessionDescription:
    """Read an SDP.

    Raises:
        SdpError: naming the first thing that is wrong.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("must start with v=0 (RFC 8866 §5.1)")
    session: list[str] = []
    sections: list[tuple[int, list[str]]] = []  # (line number of m=, the section's lines)
    for n, line in enumerate(lines, 1):
        if _CONTROL.search(line):
            # pjmedia would copy a NUL into its answer and then abort on it (docs/pjsua2.md P9).
            raise SdpError(f"line {n} has a control character")
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"line {n} {line[:40]!r} is not <type>=<value>")
        if line.startswith("c="):  # RFC 8866 §5.7: c=<nettype> <addrtype> <connection-address>
            fields = line[2:].split()
            if len(fields) != 3:
                raise SdpError(f"line {n} {line[:40]!r}: expected c=IN IP4 <address>")
            _address(n, *fields)
        elif line.startswith(
            "a=rtcp:"
        ):  # RFC 3605 §2.1: a=rtcp:<port> [<nettype> <addrtype> <addr>]
            port, *fields = line[7:].split()
            _number(port, f"line {n} {line[:40]!r}: the RTCP port", 65535)
            if fields:
                if len(fields) != 3:
                    raise SdpError(
                        f"line {n} {line[:40]!r}: expected a=rtcp:<port> IN IP4 <address>"
                    )
                _address(n, *fields)
        if line.startswith("m="):
            if len(sections) == max_media:
                raise SdpError(f"more than {max_media} media streams offered", status=488)
            sections.append((n, [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            session.append(line)
    if not sections:
        raise SdpError("no m= line (no media sections)")
    session_direction = _direction(session, "sendrecv")
    media = tuple(
        _section(index, n, body, session_direction) for index, (n, body) in enumerate(sections)
    )
    return SessionDescription(tuple(session), media)


def _section(index: int, n: int, body: list[str], session_direction: str) -> MediaSection:
    value = body[0][2:]
    parts = value.split()
    shape = f"line {n} m={value[:40]!r}: bad media line, expected m=<media> <port> <proto> <fmt>"
    if len(parts) < 4:
        raise SdpError(shape)
    port_text, _, count = parts[1].partition("/")
    port = _number(port_text, f"{shape}; the port", 65535)
    if count:
        _number(count, f"{shape}; the number of ports", 65535)
    rtpmap: dict[int, tuple[str, int, str]] = {}
    for offset, line in enumerate(body[1:], 1):
        if line.startswith("a=rtpmap:"):
            pt, fmt = _rtpmap(n + offset, line[2:])
            rtpmap.setdefault(pt, fmt)
    formats = []
    if parts[2].upper().startswith(("RTP/", "UDP/TLS/RTP/")):
        for token in parts[3:]:
            if not _PAYLOAD_TYPE.fullmatch(token):
                continue
            pt = int(token)
            if pt in rtpmap:
                formats.append(PayloadFormat(pt, *rtpmap[pt]))
            elif pt in STATIC_PAYLOADS:
                formats.append(PayloadFormat(pt, *STATIC_PAYLOADS[pt]))
    lines = tuple(body[1:])
    return MediaSection(
        index, parts[0], port, parts[2], tuple(formats), lines, _direction(lines, session_direction)
    )


def _address(n: int, nettype: str, addrtype: str, address: str) -> None:
    """An address field: ``IN IP4 <IPv4>`` or ``IN IP6 <IPv6>``, a multicast one with its
    ``/<ttl>`` (RFC 8866 §5.7).  A host name is legal SDP but 488 here: say the IP address."""
    if nettype != "IN" or addrtype not in ("IP4", "IP6"):
        raise SdpError(
            f"line {n}: network {nettype[:8]!r} {addrtype[:8]!r}, expected IN IP4 or IN IP6", 488
        )
    host = address.split("/", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SdpError(
            f"line {n}: {host[:40]!r} is not an IP{addrtype[2]} address"
            " (the bridge takes IP addresses in SDP, not host names)",
            488,
        ) from None
    if f"IP{ip.version}" != addrtype:
        raise SdpError(f"line {n}: {host[:40]!r} is not an {addrtype} address")


def _rtpmap(n: int, value: str) -> tuple[int, tuple[str, int, str]]:
    head, _, codec = value[len("rtpmap:") :].partition(" ")
    name, _, rest = codec.strip().partition("/")
    rate, _, parameters = rest.partition("/")
    shape = f"line {n} a={value[:40]!r}: bad rtpmap, expected a=rtpmap:<pt> <name>/<rate>"
    if not name or not rest:
        raise SdpError(shape)
    pt = _number(head, f"{shape}; the payload type", 127)
    return pt, (name.upper(), _number(rate, f"{shape}; the rate"), parameters.strip())


def _number(text: str, what: str, maximum: int = 10_000_000) -> int:
    """A number by ASCII rules (``²`` or 5,000 digits are a 400, not a crash)."""
    try:
        return parse_uint(text, what=what, max_digits=len(str(maximum)), maximum=maximum)
    except BadNumber as exc:
        raise SdpError(str(exc)) from None


def _direction(lines: list[str] | tuple[str, ...], default: str) -> str:
    for line in lines:
        if line.startswith("a=") and line[2:] in DIRECTIONS:
            return line[2:]
    return default


def _attribute(lines: tuple[str, ...] | list[str], name: str) -> str | None:
    for line in lines:
        if line == f"a={name}":
            return ""
        if line.startswith(f"a={name}:"):
            return line[len(name) + 3 :].strip()
    return None
