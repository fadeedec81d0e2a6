"""Trickle ICE over WHIP: checking a PATCH on a session URL (pure: text in, decision out).

RFC 9725 §4.3.1: "The WHIP client MAY perform trickle ICE or ICE restarts by sending an HTTP
PATCH request [...] to the WHIP session URL, with a body containing an SDP fragment with media
type 'application/trickle-ice-sdpfrag' as specified in [RFC8840]".  The bridge does trickle ICE
and does not do ICE restarts, so, from the same section: "If the WHIP session supports either
Trickle ICE or ICE restarts, but not both, it MUST return a '422 Unprocessable Content' error
response for the HTTP PATCH requests that are not supported".  A request carrying an
``ice-ufrag``/``ice-pwd`` other than the session's is an ICE restart (RFC 9725 §4.3.3).
(Quotes are from draft-ietf-wish-whip-16, the text that became RFC 9725.)

Preconditions (RFC 9725 §4.3.1, RFC 9110 §13.1.1, RFC 6585 §3): the 201 of the POST carried a
strong entity-tag for the ICE session; a PATCH without ``If-Match`` gets 428, with a tag that
does not match 412.  ``If-Match: *`` matches (the session exists).

A fragment (RFC 8840 §4.4) has optional session-level lines (``a=ice-ufrag``, ``a=ice-pwd``,
``a=ice-options``, ``a=group``, ``a=end-of-candidates``), then one ``m=`` line per media section
with its ``a=mid``, ``a=ice-ufrag``/``a=ice-pwd``, ``a=candidate`` and ``a=end-of-candidates``
lines.  RFC 9725 §4.3.2: a candidate whose transport the session does not support "MUST [be]
silently discard[ed]"; so are candidates of an older ICE generation (their ``ufrag`` extension
names other credentials), RTCP candidates (component 2: WebRTC muxes RTCP with RTP, RFC 8834),
and, on a loopback-only test bridge, candidates off 127.0.0.1.

The server never trickles: aiortc gathers all its candidates before it answers, and RFC 9725
§4.3.2 says the same ("The WHIP endpoint SHALL gather all the ICE candidates for the media
server before responding to the client request").

Errors are :class:`TrickleRejected` with ``status_hint``: 400 malformed fragment, 412/428
preconditions, 422 ICE restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.core.numbers import BadNumber, parse_uint
from bridge.errors import RemoteProtocolError

from .offer import IceCredentials, Offer, loopback_udp

MEDIA_TYPE = "application/trickle-ice-sdpfrag"
MAX_FRAGMENT_BYTES = 16 * 1024
MAX_REMOTE_CANDIDATES = 64  # per session; more are discarded (RFC 9725 §5: PATCH flooding)

# RFC 8839 §5.1: foundation = 1*32ice-char; ice-char = ALPHA / DIGIT / "+" / "/".
_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")
# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')


class TrickleRejected(RemoteProtocolError):
    """The PATCH cannot be applied; ``status_hint`` is 400, 412, 422 or 428."""


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    """One remote candidate for aiortc: ``candidate`` is the value of ``a=candidate:``
    (``aiortc.sdp.candidate_from_sdp`` takes it), ``mid`` the media section it belongs to."""

    mid: str
    candidate: str


@dataclass(frozen=True, slots=True)
class TricklePatch:
    """What a valid PATCH adds to the ICE session."""

    candidates: tuple[RemoteCandidate, ...]
    end_of_candidates: bool  # RFC 8838: the client has no more candidates
    discarded: int  # candidates dropped silently (unsupported transport, other generation, ...)


def check_if_match(if_match: str | None, etag: str) -> None:
    """Raise unless ``If-Match`` selects the ICE session tagged ``etag`` (a quoted strong tag).

    RFC 9110 §13.1.1: ``If-Match = "*" / #entity-tag`` with the strong comparison, so a weak
    tag never matches.
    """
    if if_match is None or not if_match.strip():
        raise TrickleRejected(
            "a trickle ICE PATCH needs 'If-Match' with the ETag of the session's 201 response "
            "(RFC 9725 §4.3.1)",
            status_hint=428,
        )
    value = if_match.strip()
    if value == "*":
        return
    tags = _entity_tags(value)
    if tags is None:
        raise TrickleRejected(
            f"If-Match {value[:80]!r} is not '*' or a list of quoted entity-tags "
            "(RFC 9110 §13.1.1)",
            status_hint=400,
        )
    if not any(not weak and tag == etag for weak, tag in tags):
        raise TrickleRejected(
            f"If-Match {value[:80]!r} does not match this ICE session's ETag {etag}",
            status_hint=412,
        )


def read_fragment(
    body: str, offer: Offer, *, loopback_only: bool = False, room: int = MAX_REMOTE_CANDIDATES
) -> TricklePatch:
    """Parse an ``application/trickle-ice-sdpfrag`` body against the session's ``offer``.

    ``room``: how many more remote candidates the session takes; the rest are discarded.
    Raises :class:`TrickleRejected`: 400 if malformed, 422 if it asks for an ICE restart.
    """
    if len(body) > MAX_FRAGMENT_BYTES:
        raise TrickleRejected(
            f"the SDP fragment is larger than {MAX_FRAGMENT_BYTES} bytes", status_hint=400
        )
    lines = [line.strip() for line in body.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines:
        raise TrickleRejected(
            "the SDP fragment is empty: send a=candidate lines under the m= line of their "
            "section (with its a=mid), or a=end-of-candidates (RFC 8840 §4.4)",
            status_hint=400,
        )
    ufrags: set[str] = set()
    pwds: set[str] = set()
    in_media = False
    media_index = 0
    pending: list[tuple[int, str]] = []  # (media section of the fragment, candidate)
    mids: dict[int, str | None] = {}
    end = False
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise TrickleRejected(
                f"fragment line {n} is not 'x=value' (RFC 8866 §5): {line[:40]!r}",
                status_hint=400,
            )
        if line.startswith("m="):
            if len(line[2:].split()) < 4:
                raise TrickleRejected(
                    f"bad media line {line[:60]!r}: expected 'm=<media> <port> <proto> <fmt>'",
                    status_hint=400,
                )
            in_media = True
            media_index += 1
            mids[media_index] = None
        elif line.startswith("a=mid:") and in_media:
            mids[media_index] = line[len("a=mid:") :].strip()
        elif line.startswith("a=ice-ufrag:"):
            ufrags.add(line[len("a=ice-ufrag:") :].strip())
        elif line.startswith("a=ice-pwd:"):
            pwds.add(line[len("a=ice-pwd:") :].strip())
        elif line == "a=end-of-candidates":
            end = True
        elif line.startswith("a=candidate:"):
            if not in_media:
                raise TrickleRejected(
                    "a=candidate before any m= line: RFC 8840 §4.4 puts each candidate under "
                    "the m= line of its media section, identified by a=mid",
                    status_hint=400,
                )
            value = line[len("a=candidate:") :].strip()
            _check_candidate(value, n)
            pending.append((media_index, value))
        # Anything else (a=ice-options, a=group, extension attributes) does not change ICE here.
    _check_not_restart(offer.ice, ufrags, pwds)
    candidates: list[RemoteCandidate] = []
    discarded = 0
    for section, value in pending:
        section_mid = mids[section]  # a=mid may follow the candidates within the section
        if section_mid is None:
            raise TrickleRejected(
                f"media section {section} of the fragment has candidates but no a=mid "
                "(RFC 8840 §4.4: the mid names the section they belong to)",
                status_hint=400,
            )
        if section_mid not in offer.mids:
            known = ", ".join(offer.mids) or "none"
            raise TrickleRejected(
                f"a=mid:{section_mid} of the fragment is not a media section of the offer "
                f"(its mids: {known})",
                status_hint=400,
            )
        if not _usable(value, offer.ice, loopback_only=loopback_only) or len(candidates) >= room:
            discarded += 1
            continue
        candidates.append(RemoteCandidate(section_mid, value))
    return TricklePatch(tuple(candidates), end_of_candidates=end, discarded=discarded)


# -- helpers ---------------------------------------------------------------------------------


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags or None


def _check_candidate(value: str, n: int) -> None:
    """RFC 8839 §5.1: foundation component transport priority address port "typ" type ..."""
    fields = value.split()
    expected = (
        "expected 'a=candidate:<foundation> <component> <transport> <priority> <address> "
        "<port> typ <type> ...' (RFC 8839 §5.1)"
    )
    if len(fields) < 8 or fields[6] != "typ":
        raise TrickleRejected(f"bad candidate on line {n}: {expected}", status_hint=400)
    foundation, component, _, priority, _, port = fields[:6]
    if not _FOUNDATION.fullmatch(foundation):
        raise TrickleRejected(
            f"bad candidate foundation {foundation[:40]!r} on line {n}: {expected}",
            status_hint=400,
        )
    numbers = (("component", component, 3, 256), ("priority", priority, 10, 2**32 - 1))
    rports = [
        text for name, text in zip(fields[8::2], fields[9::2], strict=False) if name == "rport"
    ]
    checks = (*numbers, ("port", port, 5, 65535), *(("rport", text, 5, 65535) for text in rports))
    for name, text, digits, top in checks:
        try:
            parse_uint(text, what=f"candidate {name}", max_digits=digits, maximum=top)
        except BadNumber:
            raise TrickleRejected(
                f"bad candidate {name} {text[:20]!r} on line {n}: {expected}", status_hint=400
            ) from None


def _check_not_restart(ice: IceCredentials, ufrags: set[str], pwds: set[str]) -> None:
    if ufrags - {ice.ufrag} or pwds - {ice.pwd}:
        raise TrickleRejected(
            "this PATCH carries new ICE credentials (a=ice-ufrag/a=ice-pwd), which asks for an "
            "ICE restart (RFC 9725 §4.3.3); the bridge supports trickle ICE but not ICE "
            f"restarts: trickle candidates with ice-ufrag {ice.ufrag!r}, or DELETE the session "
            "and POST a new offer",
            status_hint=422,
        )


def _usable(value: str, ice: IceCredentials, *, loopback_only: bool) -> bool:
    fields = value.split()
    if fields[2].lower() != "udp" or fields[1] != "1":
        return False  # aioice does UDP only; RTCP is muxed (component 1)
    extensions = dict(zip(fields[8::2], fields[9::2], strict=False))
    if extensions.get("ufrag", ice.ufrag) != ice.ufrag:
        return False  # another ICE generation (RFC 8840 §4.4)
    return not loopback_only or loopback_udp(value)
