"""Checking a WHIP offer before aiortc sees it (pure: text in, decision out).

RFC 9725 §4.2: the client POSTs an SDP offer (``application/sdp``); the server answers 201 with
the SDP answer, or an error.  We parse only what decides the answer: the audio ``m=`` sections,
their codecs and directions.  aiortc decodes Opus, PCMU and PCMA (RFC 7874 §3: WebRTC endpoints
must offer Opus and G.711), so an audio section without one of those cannot become a leg.

It also keeps what a later trickle PATCH is checked against (:mod:`bridge.webrtc.trickle`): the
offer's ICE credentials and the ``a=mid`` of every media section.

Errors are :class:`OfferRejected` with ``status_hint``: 400 malformed SDP, 406 nothing usable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bridge.core.sdp import SdpError, parse_sdp
from bridge.errors import RemoteProtocolError

# Codec names (lower case) / clock rates aiortc can decode, in our order of preference.
USABLE_CODECS: tuple[tuple[str, int], ...] = (("opus", 48000), ("pcmu", 8000), ("pcma", 8000))
SENDING = ("sendonly", "sendrecv")  # RFC 8866 §6.7: the client's view; it must send to us
MAX_SDP_BYTES = 64 * 1024


class OfferRejected(RemoteProtocolError):
    """The offer cannot be answered; ``status_hint`` is 400 (malformed) or 406 (unusable)."""


@dataclass(frozen=True, slots=True)
class AudioSection:
    """One ``m=audio`` section of the offer."""

    index: int  # position among all m= sections
    mid: str | None
    direction: str
    codecs: tuple[str, ...]  # "opus/48000/2", "pcmu/8000", ... as offered, lower case
    port: int

    @property
    def usable_codec(self) -> str | None:
        """The codec aiortc will pick for this section (its preference: the offer's order)."""
        for codec in self.codecs:
            name, _, rest = codec.partition("/")
            rate = rest.partition("/")[0]
            if (name, int(rate or 0)) in USABLE_CODECS:
                return codec
        return None


@dataclass(frozen=True, slots=True)
class IceCredentials:
    """The ICE username fragment and password of one ICE session (RFC 8839 §5.4)."""

    ufrag: str
    pwd: str


@dataclass(frozen=True, slots=True)
class Offer:
    """What the bridge takes from an acceptable offer: the audio sections that become legs, and
    what identifies its ICE session for trickled candidates."""

    tracks: tuple[AudioSection, ...]
    ice: IceCredentials
    mids: tuple[str, ...]  # a=mid of every m= section, in order


def check_offer(sdp: str, *, max_tracks: int) -> Offer:
    """Parse ``sdp`` and decide: the audio sections to receive, or :class:`OfferRejected`."""
    if len(sdp) > MAX_SDP_BYTES:
        raise OfferRejected(f"the offer is larger than {MAX_SDP_BYTES} bytes", status_hint=400)
    try:
        description = parse_sdp(sdp)  # the one SDP reader: syntax, numbers, m= and rtpmap
    except SdpError as exc:
        status = 400 if exc.status_hint == 400 else 406
        raise OfferRejected(str(exc), status_hint=status) from None
    media = description.media
    if description.attribute("fingerprint") is None and not any(
        m.attribute("fingerprint") is not None for m in media
    ):
        raise OfferRejected(
            "the offer has no DTLS fingerprint (a=fingerprint): WebRTC media must be encrypted",
            status_hint=400,
        )
    audio: list[AudioSection] = []
    for section in media:
        if section.kind != "audio" or section.port == 0:
            if section.kind == "video" and section.port != 0:
                raise OfferRejected(
                    "the offer sends video: the bridge transcribes audio only; offer audio "
                    "tracks only (or set the video transceiver to inactive)",
                    status_hint=406,
                )
            continue
        if section.direction not in SENDING:
            continue
        audio.append(
            AudioSection(
                index=section.index,
                mid=section.mid,
                direction=section.direction,
                codecs=tuple(f.codec for f in section.formats),
                port=section.port,
            )
        )
    if not audio:
        raise OfferRejected(
            "the offer sends no audio: add a microphone track with direction sendonly or sendrecv",
            status_hint=406,
        )
    for track in audio:
        if track.usable_codec is None:
            offered = ", ".join(track.codecs) or "none"
            raise OfferRejected(
                f"audio section {track.index} offers no codec the bridge decodes "
                f"(offered: {offered}; accepted: opus/48000, PCMU/8000, PCMA/8000)",
                status_hint=406,
            )
    if len(audio) > max_tracks:
        raise OfferRejected(
            f"the offer sends {len(audio)} audio tracks; the bridge takes at most {max_tracks} "
            "(one per speaker: see ?roles=)",
            status_hint=406,
        )
    # RFC 8839 §5.4: ice-ufrag and ice-pwd, at session level or in the media section; with
    # BUNDLE (every WebRTC offer) all sections share the first section's ICE session.
    first = media[audio[0].index]
    ufrag = description.attribute("ice-ufrag") or first.attribute("ice-ufrag")
    pwd = description.attribute("ice-pwd") or first.attribute("ice-pwd")
    if not ufrag or not pwd:
        raise OfferRejected(
            "the offer has no ICE credentials (a=ice-ufrag and a=ice-pwd, RFC 8839 §5.4)",
            status_hint=400,
        )
    mids = tuple(mid for mid in (m.mid for m in media) if mid)
    return Offer(tracks=tuple(audio), ice=IceCredentials(ufrag, pwd), mids=mids)


def keep_candidates(sdp: str, *, loopback_only: bool) -> str:
    """The offer without ICE candidates we cannot use (tests run on 127.0.0.1 only)."""
    if not loopback_only:
        return sdp
    out = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=candidate:") and not loopback_udp(line[len("a=candidate:") :]):
            continue
        out.append(line)
    return "\r\n".join(out)


def advertise_public_address(answer_sdp: str, public_address: str) -> str:
    """The answer with each host UDP candidate repeated on ``public_address`` (1:1 NAT).

    aioice gathers host candidates on the local interfaces only and has no NAT mapping option.
    Behind a static 1:1 NAT (a cloud VM's public IP) the peer can reach the same port on the
    public address, so the answer offers that too: a host candidate (RFC 8445 §5.1.1.1) with its
    own foundation and a slightly lower priority than the private one, like Janus'
    ``nat_1_1_mapping`` with the private address kept.  Port and component are unchanged.
    """
    out: list[str] = []
    for line in answer_sdp.replace("\r\n", "\n").split("\n"):
        out.append(line)
        parts = line[len("a=candidate:") :].split() if line.startswith("a=candidate:") else []
        # RFC 8839 §5.1: foundation component transport priority address port "typ" type ...
        if len(parts) >= 8 and parts[2].lower() == "udp" and parts[7] == "host":
            if parts[4] == public_address:
                continue
            mapped = [f"{parts[0]}n", parts[1], parts[2], str(max(0, int(parts[3]) - 1))]
            out.append("a=candidate:" + " ".join(mapped + [public_address] + parts[5:]))
    return "\r\n".join(out)


def loopback_udp(candidate: str) -> bool:
    """Whether a candidate (the value of ``a=candidate:``) is UDP on a loopback address."""
    parts = candidate.split()
    return len(parts) >= 5 and parts[2].lower() == "udp" and _is_loopback(parts[4])


# -- helpers ---------------------------------------------------------------------------------


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
